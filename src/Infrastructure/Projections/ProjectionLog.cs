using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.Projections;

internal static partial class ProjectionLog
{
    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Projection {Projection}: lease taken by {Node} (token {Token}) at checkpoint {Checkpoint}")]
    public static partial void LeaseTaken(ILogger logger, string projection, string node, long token, string checkpoint);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "Projection {Projection}: applying events failed (attempt {Attempt}/{MaxAttempts}); retrying")]
    public static partial void ApplyFailed(ILogger logger, Exception exception, string projection, int attempt, int maxAttempts);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Error,
        Message = "Projection {Projection} paused at event {StreamId}@{Version} (seq {Sequence}): {Reason}. Fix the cause, then resume it; nothing was skipped")]
    public static partial void Paused(ILogger logger, string projection, string? streamId, long? version, long? sequence, string reason);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Warning, Message = "Projection {Projection}: checkpoint or lease moved under this node; its batch was rolled back")]
    public static partial void CheckpointMoved(ILogger logger, string projection);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Information, Message = "Projection {Projection}: rebuilding from zero")]
    public static partial void Rebuilding(ILogger logger, string projection);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Warning, Message = "Projection {Projection}: database error in the daemon loop; retrying")]
    public static partial void LoopError(ILogger logger, Exception exception, string projection);
}
