using System.Diagnostics.Metrics;
using System.Text.Json;
using Marten;
using Propeller.Contracts.Mqtt;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// A start published late may have been overtaken: one replayed from the dead letters after the broker was down, or
/// recovered from a dead node, can find its task stopped, deleted, ended or dispatched again elsewhere as a newer
/// attempt. Published as it was, it ran an attempt the manager had given up (twice, when the new attempt ran too). A
/// start older than <see cref="CheckAfter"/> is compared with the task as it is now and dropped, logged and counted
/// (<c>manager_late_starts_dropped</c>) when it no longer starts the current run (attempt and dispatch); a start on time is published
/// without a read.
/// </summary>
public sealed partial class LateStarts(IDocumentStore store, TimeProvider time, ILogger<LateStarts> logger)
{
    private static readonly Counter<long> Dropped = ManagerMeter.Meter.CreateCounter<long>(
        "manager_late_starts_dropped", "{message}", "Start messages published late (replayed, recovered) and dropped because their task had moved on");

    private static readonly string StartSuffix = "/" + Topics.Start;

    /// <summary>How old a start may be before it is checked (a start on time is published within milliseconds).</summary>
    internal TimeSpan CheckAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>True when <paramref name="message"/> is a start, sent before <see cref="CheckAfter"/>, for an attempt that is no longer current.</summary>
    public async ValueTask<bool> IsOvertakenAsync(PublishToBroker message, DateTimeOffset sentAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (!message.Topic.EndsWith(StartSuffix, StringComparison.Ordinal) || time.GetUtcNow() - sentAt < CheckAfter)
        {
            return false;
        }

        StartMessage? start;
        try
        {
            start = JsonSerializer.Deserialize<StartMessage>(message.Payload);
        }
        catch (JsonException)
        {
            return false;
        }

        if (start is null || !Guid.TryParse(start.Id, out var id))
        {
            return false;
        }

        await using var session = store.QuerySession();
        var task = await session.LoadAsync<TaskState>(new TaskId(id), cancellationToken);
        var now = task is { Exists: true, Deleted: false } ? task : null;
        // A run that goes on (a serving task's too: its start is sent again when its proplet lost it, HeldTasks) of the
        // start's attempt and dispatch: a task dispatched again since (Scheduled once more, or Running again, even on
        // the same proplet) has given up the run this start begins.
        var current = now is { RunGoesOn: true }
            && now.Attempt == (start.Attempt ?? 0)
            && (start.Dispatch is null || start.Dispatch == now.Dispatch)
            && (start.Broadcast || string.Equals(now.PropletId, start.PropletId, StringComparison.Ordinal));
        if (current)
        {
            return false;
        }

        Dropped.Add(1);
        LogDropped(logger, start.Id, start.Attempt ?? 0, start.PropletId ?? "every proplet", sentAt, now is null ? "gone" : $"{now.Status} (attempt {now.Attempt} on {now.PropletId ?? "no proplet"})");
        return true;
    }

    [LoggerMessage(EventId = 6106, Level = LogLevel.Warning, Message = "A late start of task {TaskId} (attempt {Attempt} on {PropletId}, sent {SentAt:O}) was not published: the task is now {Now}")]
    private static partial void LogDropped(ILogger logger, string taskId, int attempt, string propletId, DateTimeOffset sentAt, string now);
}
