using Marten;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Wolverine;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// The results of one broker batch, each for a different task (ADR 0014): recorded in one Marten session, so in one
/// transaction and one round trip for the reads and one for the writes, instead of one of each per result.
/// Invoked in process by <see cref="WolverineInboundCommands"/>, never serialized.
/// </summary>
public sealed record RecordResults(IReadOnlyList<RecordedResult> Results);

/// <summary>One result message as a command, with the metadata its events carry (correlation, the message's key as causation, the proplet as user).</summary>
public sealed record RecordedResult(TaskCommand.RecordResult Command, EventMetadata Metadata);

/// <summary>What each result of a <see cref="RecordResults"/> came to, in the batch's order.</summary>
public sealed record RecordedResults(IReadOnlyList<CommandResult<TaskEvent, TaskState>> Outcomes);

/// <summary>
/// Records a batch of results: every task's stream is fetched for writing in one batched query (expected versions
/// from the inline <see cref="TaskState"/>), <see cref="TaskDecider"/> decides each result on its task's state, and the
/// appended events (each stream stamped with its own result's metadata) commit together through Wolverine's
/// transactional middleware. A duplicate or late result is decided too and recorded as ignored. A lost race on any of
/// the streams fails the batch with Marten's concurrency error, and the conflict policy decides the whole batch again.
/// </summary>
public static class RecordResultsHandler
{
    public static async Task<RecordedResults> HandleAsync(RecordResults message, IDocumentSession session, CommandSessionServices services, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(services);
        var streams = await WolverineStreams.FetchForWritingAsync<TaskState>(session, message.Results.Select(r => r.Command.TaskId.Value), cancellationToken);

        CommandSessionListener? listener = null;
        var outcomes = new List<CommandResult<TaskEvent, TaskState>>(message.Results.Count);
        for (var i = 0; i < message.Results.Count; i++)
        {
            var (command, metadata) = message.Results[i];
            var stream = streams[i];
            var before = stream.Aggregate ?? TaskState.Initial;
            var decision = TaskDecider.Decide(command, before);
            if (decision.Rejection is not null || decision.Events.Count == 0)
            {
                outcomes.Add(new CommandResult<TaskEvent, TaskState>(before, stream.CurrentVersion ?? 0, [], decision.Rejection));
                continue;
            }

            var state = decision.Events.Aggregate(before, TaskDecider.Evolve);
            listener ??= services.Attach(session, metadata);
            var version = listener.Append(stream, TaskAggregate.StreamId(command.TaskId), decision.Events, state, metadata);
            outcomes.Add(new CommandResult<TaskEvent, TaskState>(state, version, decision.Events, null));
        }

        return new RecordedResults(outcomes);
    }
}
