using Propeller.Infrastructure;

namespace Propeller.Manager.Telemetry;

/// <summary>
/// A lost race on a stream (optimistic concurrency: JasperFx's ConcurrencyException) is routine: the command is decided
/// again on the new state (Wolverine's retry policy, the batch's commands one by one, the inbound handler's tries), and
/// one that still fails surfaces where its caller handles it (409, a dead letter, the inbound handler's error). Marten
/// logs each command of the failed batch as an error with its SQL (three per race) and Wolverine each failed
/// InvokeAsync ("Invocation of … failed!"): measured, ~1,000 error entries in 150 s of the chaos test, every one of them
/// retried. Those two kinds of entry are written at debug level instead; everything else passes unchanged.
/// </summary>
internal sealed class RoutineConflictLogs(ILoggerFactory inner) : ILoggerFactory
{
    /// <summary>The category of Marten's command logging (its default IMartenLogger's).</summary>
    public const string MartenCommands = "Marten.IDocumentStore";

    public ILogger CreateLogger(string categoryName) => new DemotingLogger(inner.CreateLogger(categoryName), categoryName == MartenCommands);

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    public void Dispose() => inner.Dispose();

    private sealed class DemotingLogger(ILogger inner, bool martenCommands) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Warning && exception is not null && PostgresFailures.IsConflict(exception)
                && (martenCommands || formatter(state, exception).StartsWith("Invocation of ", StringComparison.Ordinal)))
            {
                logLevel = LogLevel.Debug;
                if (!inner.IsEnabled(logLevel))
                {
                    return;
                }
            }

            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }
}
