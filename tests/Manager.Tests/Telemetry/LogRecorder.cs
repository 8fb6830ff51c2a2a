using Microsoft.Extensions.Logging;

namespace Propeller.Manager.Tests.Telemetry;

/// <summary>A logger provider that keeps every entry written through it, as "category: message", with its level.</summary>
internal sealed class LogRecorder : ILoggerProvider
{
    public List<string> Lines { get; } = [];

    public List<LogLevel> Levels { get; } = [];

    public ILogger CreateLogger(string categoryName) => new Line(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Line(LogRecorder recorder, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (recorder.Lines)
            {
                recorder.Lines.Add($"{category}: {formatter(state, exception)}");
                recorder.Levels.Add(logLevel);
            }
        }
    }
}
