using JasperFx.Events;
using Marten.Events.Projections;
using Propeller.Domain.Tasks;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// What happened to tasks overall: how many events of each type all task streams hold (created, dispatched,
/// completed, failed, ...), for the dashboard. One document, written by Marten's async daemon (it may lag: a
/// multi-stream document updated inline by concurrent appends would be a hot row).
/// </summary>
public sealed record TaskActivity
{
    public const string AllTasks = "all";

    public string Id { get; set; } = AllTasks;

    /// <summary>Events per type alias (task.created.v1, ...).</summary>
    public IReadOnlyDictionary<string, long> Events { get; init; } = new Dictionary<string, long>();

    /// <summary>The newest event's sequence in the store (how far the document has read).</summary>
    public long LastSequence { get; init; }

    /// <summary>When the newest counted event was appended.</summary>
    public DateTimeOffset? LastEventAt { get; init; }
}

/// <summary>The async multi-stream projection behind <see cref="TaskActivity"/>: every task event counts once.</summary>
public sealed class TaskActivityProjection : MultiStreamProjection<TaskActivity, string>
{
    public const string ProjectionName = "task_activity";

    public TaskActivityProjection()
    {
        Name = ProjectionName;
        Identity<TaskEvent>(_ => TaskActivity.AllTasks);
    }

    public override TaskActivity? Evolve(TaskActivity? snapshot, string id, IEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e.Data is not TaskEvent)
        {
            return snapshot;
        }

        var events = new Dictionary<string, long>(snapshot?.Events ?? new Dictionary<string, long>(), StringComparer.Ordinal);
        events[e.EventTypeName] = events.GetValueOrDefault(e.EventTypeName) + 1;
        return new TaskActivity { Id = id, Events = events, LastSequence = e.Sequence, LastEventAt = e.Timestamp };
    }
}
