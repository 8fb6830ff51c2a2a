using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Propeller.Manager.Tests;

/// <summary>
/// The test manager's warnings and errors as text (category, message, exception), so that a test's failure can say what
/// the manager logged meanwhile (the console output is not captured by the test runner).
/// </summary>
internal sealed class CapturedWarnings : ILoggerProvider
{
    private const int Most = 200;

    private readonly ConcurrentQueue<string> _entries = new();

    public override string ToString() => _entries.IsEmpty ? "(the manager logged no warning)" : string.Join('\n', _entries);

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturedWarnings owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel) && owner._entries.Count < Most)
            {
                owner._entries.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " | " + exception.GetType().Name + ": " + exception.Message)}");
            }
        }
    }
}
