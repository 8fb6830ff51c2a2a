using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.EventStore;

internal static partial class EventStoreLog
{
    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning,
        Message = "PostgreSQL at {Address} is unreachable (check {Setting}); attempt {Attempt}/{MaxAttempts}, retrying in {Delay}: {Reason}")]
    public static partial void DatabaseUnreachable(ILogger logger, string address, string setting, int attempt, int maxAttempts, TimeSpan delay, string reason);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Event store schema {Schema}: applied migration {Version} ({Description})")]
    public static partial void MigrationApplied(ILogger logger, string schema, int version, string description);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "Append to {StreamId} hit a transaction-order conflict; retrying")]
    public static partial void OrderingRetry(ILogger logger, string streamId);
}
