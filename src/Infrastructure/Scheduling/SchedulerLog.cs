using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.Scheduling;

internal static partial class SchedulerLog
{
    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Task {TaskId} dispatched to proplet {PropletId}")]
    public static partial void Dispatched(ILogger logger, string taskId, string propletId);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "Task {TaskId} waits: {Reason}")]
    public static partial void Waiting(ILogger logger, string taskId, string reason);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Warning, Message = "Scheduler round failed; retrying")]
    public static partial void RoundFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 6010, Level = LogLevel.Warning, Message = "Task {TaskId} not dispatched: {Reason}")]
    public static partial void Blocked(ILogger logger, string taskId, string reason);
}
