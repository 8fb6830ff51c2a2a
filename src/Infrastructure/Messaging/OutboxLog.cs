using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.Messaging;

internal static partial class OutboxLog
{
    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "Outbox message {Id} to {Destination} failed (attempt {Attempt}); retrying in {Delay}: {Reason}")]
    public static partial void PublishFailed(ILogger logger, long id, string destination, int attempt, TimeSpan delay, string reason);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Error, Message = "Outbox message {Id} to {Destination} dead-lettered after {Attempts} attempts: {Reason}")]
    public static partial void DeadLettered(ILogger logger, long id, string destination, int attempts, string reason);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Outbox relay: database error; retrying")]
    public static partial void LoopError(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5010, Level = LogLevel.Warning, Message = "Outbox message {Id} to {Destination} not sent right after commit ({Reason}); the relay will retry it")]
    public static partial void FastPathFailed(ILogger logger, long id, string destination, string reason);
}
