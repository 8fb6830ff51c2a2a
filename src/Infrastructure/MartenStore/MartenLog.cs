using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.MartenStore;

internal static partial class MartenLog
{
    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning,
        Message = "PostgreSQL at {Address} is unreachable (check {Setting}); attempt {Attempt}/{MaxAttempts}, retrying in {Delay}: {Reason}")]
    public static partial void DatabaseUnreachable(ILogger logger, string address, string setting, int attempt, int maxAttempts, TimeSpan delay, string reason);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Marten event store schema applied in {Schema}")]
    public static partial void SchemaApplied(ILogger logger, string schema);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Information,
        Message = "Waiting for the schema lock of {Schema}, held by another process (a node applying the schema, or a projection rebuild): this node starts once it is released")]
    public static partial void SchemaLockWaiting(ILogger logger, string schema);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Information, Message = "Rebuilding projection {Projection} from {Events} events (up to sequence {Sequence})")]
    public static partial void RebuildStarted(ILogger logger, string projection, long events, long sequence);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "Rebuilding projection {Projection}: at sequence {Reached} of {Sequence} after {Elapsed}")]
    public static partial void RebuildProgress(ILogger logger, string projection, long reached, long sequence, TimeSpan elapsed);

    [LoggerMessage(EventId = 2104, Level = LogLevel.Information, Message = "Rebuilt projection {Projection}: {Events} events in {Elapsed} ({Rate:F0} events/s)")]
    public static partial void RebuildFinished(ILogger logger, string projection, long events, TimeSpan elapsed, double rate);
}
