using Propeller.Infrastructure;
using Propeller.Manager.Wolverine;

namespace Propeller.Manager.Telemetry;

/// <summary>
/// A lost race on a stream (optimistic concurrency: <see cref="PostgresFailures.IsConflict"/>) is routine: the command is decided
/// again on the new state (Wolverine's retry policy, the batch's commands one by one, the inbound handler's tries), and
/// one that still fails surfaces where its caller handles it (409, a dead letter, the inbound handler's error). Marten
/// logs each command of the failed batch as an error with its SQL (three per race; some with PostgreSQL's unique
/// violation on the stream's version, before Marten names it) and Wolverine each failed try of a handler ("Invocation
/// of … failed!", "Failed to process message …"): measured, ~1,000 error entries in 150 s of the chaos test, every one
/// of them retried. Those entries are written at debug level instead; everything else passes unchanged, a message moved
/// to the error queue among them. So is Wolverine's entry for an invocation refused on purpose (a plugin's deny, a
/// failed validation, a gate that met a change of its task): its caller answers it (403, 400, a gate again or 409) and
/// the refusal has its own entry where it is decided; as an error it read as a fault of the manager.
/// </summary>
internal sealed class RoutineConflictLogs(ILoggerFactory inner) : ILoggerFactory
{
    /// <summary>The category of Marten's command logging (its default IMartenLogger's).</summary>
    public const string MartenCommands = "Marten.IDocumentStore";

    public ILogger CreateLogger(string categoryName) => new DemotingLogger(inner.CreateLogger(categoryName), categoryName == MartenCommands);

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    public void Dispose() => inner.Dispose();

    /// <summary>Wolverine's entry for one failed try of a handler: an InvokeAsync's (its caller gets the exception) or a
    /// queued message's (the error policy tries it again; one moved to the error queue has an entry of its own).</summary>
    private static bool IsAttempt(string message) =>
        message.StartsWith("Invocation of ", StringComparison.Ordinal) || message.StartsWith("Failed to process message ", StringComparison.Ordinal);

    /// <summary>A refusal an invocation's caller answers: not a failure of the handler.</summary>
    private static bool IsRefusal(Exception exception) =>
        exception is PluginDeniedException or StaleGateException or GateRaceException or FluentValidation.ValidationException;

    private sealed class DemotingLogger(ILogger inner, bool martenCommands) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Warning && exception is not null
                && ((PostgresFailures.IsConflict(exception) && (martenCommands || IsAttempt(formatter(state, exception))))
                    || (IsRefusal(exception) && formatter(state, exception).StartsWith("Invocation of ", StringComparison.Ordinal))))
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
