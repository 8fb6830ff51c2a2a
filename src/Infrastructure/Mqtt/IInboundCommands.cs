using Propeller.Domain.Common;
using Propeller.Application.EventStore;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// The write side for what proplets send (ADR 0014): Wolverine handlers decide results (TaskDecider) and discovery, Last Will and
/// a heartbeat's coming back online (PropletDecider) in the aggregate handler workflow and commit their events before
/// these calls return, so <see cref="InboundHandler"/> still acknowledges a message to the broker only after its effect
/// is committed. A redelivered or late result is decided again on the task's state and recorded as ignored
/// (<c>task.result_ignored.v1</c>); a redelivered discovery or Last Will changes nothing.
/// </summary>
public interface IInboundCommands
{
    Task RecordResultAsync(TaskCommand.RecordResult command, EventMetadata metadata, CancellationToken cancellationToken);

    /// <summary>
    /// Records the results of one broker batch, in order, returning once each is committed or has failed (fewer
    /// transactions than one <see cref="RecordResultAsync"/> each; a task's results stay in their order): per result,
    /// null when it is committed, else why it failed (the others are committed all the same, so only a failed one may be
    /// recorded again). Throws only when <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    Task<IReadOnlyList<Exception?>> RecordResultsAsync(IReadOnlyList<(TaskCommand.RecordResult Command, EventMetadata Metadata)> results, CancellationToken cancellationToken);

    /// <summary>Decides and commits a proplet command; returns the decider's rejection, if any.</summary>
    Task<Rejection?> HandlePropletAsync(PropletCommand command, EventMetadata metadata, CancellationToken cancellationToken);

    /// <summary>
    /// A proplet reported the tasks it holds (<paramref name="held"/>: each task's run, null parts where its start named
    /// none): the start of a task running there by the manager's record and not held is sent again, the stop of a held
    /// run the manager has ended or moved on from is sent again; committed before this returns. <paramref name="sessionPresent"/>:
    /// the report came as the proplet connected, and says whether the broker kept its session (null otherwise).
    /// </summary>
    Task ReconcileHeldAsync(string propletId, IReadOnlyDictionary<Guid, HeldRun> held, DateTimeOffset reportedAt, bool? sessionPresent, CancellationToken cancellationToken);
}

/// <summary>The run of a task a proplet reported it holds: the attempt and dispatch its start named (null: none).</summary>
public readonly record struct HeldRun(int? Attempt, int? Dispatch);
