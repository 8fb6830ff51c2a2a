using Microsoft.Extensions.Logging;

namespace Propeller.Application.Aggregates;

internal static partial class CommandLog
{
    [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "Command on stream {StreamId} lost a race (attempt {Attempt}, stream now at {Actual}); deciding again")]
    public static partial void RetryingAfterConflict(ILogger logger, string streamId, int attempt, long actual);
}
