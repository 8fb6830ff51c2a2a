using System.Collections.Concurrent;
using Propeller.Infrastructure;

namespace Propeller.Manager.Telemetry;

/// <summary>
/// While PostgreSQL cannot be used, Wolverine's and Marten's background agents (durability polling, the node agents,
/// the control queue, scheduled jobs, the projection daemon, the metrics sweeper) log every failed poll as an error with
/// its stack trace: measured, 390 errors and ~9,000 lines for a 30 s outage, which buried everything else; our own
/// session recovery and the API's 503s (one per request) add theirs. In every category, an entry of warning level or
/// above whose exception says PostgreSQL is unusable (<see cref="PostgresFailures.IsUnavailable"/>) is logged once per
/// <see cref="Window"/> and category; the ones after it in the window are counted, and the next one logged is preceded
/// by how many were left out (EventId 4004). Everything else passes unchanged.
/// </summary>
internal sealed partial class OutageLogCondenser(ILoggerFactory inner, TimeProvider time) : ILoggerFactory
{
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    private readonly ConcurrentDictionary<string, Gate> _gates = new(StringComparer.Ordinal);

    public ILogger CreateLogger(string categoryName) =>
        new CondensingLogger(inner.CreateLogger(categoryName), _gates.GetOrAdd(categoryName, _ => new Gate()), categoryName, time);

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    public void Dispose() => inner.Dispose();

    [LoggerMessage(EventId = 4004, Level = LogLevel.Warning, Message = "{Count} more entries of {Category} for PostgreSQL being unavailable were left out after the one logged at {Since:O} (one a minute is logged)")]
    private static partial void LogLeftOut(ILogger logger, int count, string category, DateTimeOffset since);

    /// <summary>One category's window: when its first entry was logged, how many were left out since.</summary>
    private sealed class Gate
    {
        private readonly Lock _lock = new();
        private long? _opened;
        private DateTimeOffset _openedAt;
        private int _leftOut;

        /// <summary>True when an entry is to be logged now (<paramref name="leftOut"/>: how many were left out since the
        /// one logged at <paramref name="since"/>); false when it is to be counted and dropped. The window is measured on
        /// the monotonic clock: on the wall clock, a step back (NTP correcting a clock that ran ahead) made the time since the window opened
        /// negative, and every entry was dropped until the clock caught up.</summary>
        public bool Admit(TimeProvider time, out int leftOut, out DateTimeOffset since)
        {
            lock (_lock)
            {
                since = _openedAt;
                if (_opened is { } opened && time.GetElapsedTime(opened) < Window)
                {
                    _leftOut++;
                    leftOut = 0;
                    return false;
                }

                leftOut = _leftOut;
                _leftOut = 0;
                _opened = time.GetTimestamp();
                _openedAt = time.GetUtcNow();
                return true;
            }
        }
    }

    private sealed class CondensingLogger(ILogger inner, Gate gate, string category, TimeProvider time) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Warning && exception is not null && PostgresFailures.IsUnavailable(exception))
            {
                if (!gate.Admit(time, out var leftOut, out var since))
                {
                    return;
                }

                if (leftOut > 0)
                {
                    LogLeftOut(inner, leftOut, category, since);
                }
            }

            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }
}
