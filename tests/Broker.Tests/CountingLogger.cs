using Microsoft.Extensions.Logging;

namespace Propeller.Broker.Tests;

/// <summary>A logger that counts the entries of each event id, for tests that check what a connection did.</summary>
internal sealed class CountingLogger : ILogger
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, int> _counts = new();

    public int Count(int eventId) => _counts.GetValueOrDefault(eventId);

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        _counts.AddOrUpdate(eventId.Id, 1, (_, count) => count + 1);
}
