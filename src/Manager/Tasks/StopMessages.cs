using System.Text.Json;
using Propeller.Application.Messaging;
using Propeller.Contracts.Mqtt;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Tasks;

/// <summary>
/// The stop message for a stopped task (spec propeller-edge.md §1.9), or none when the manager has no broker
/// configured (then nothing runs anywhere to be stopped).
/// </summary>
public sealed class StopMessages(string? baseTopic)
{
    public IReadOnlyList<OutgoingMessage> For(TaskState task)
    {
        if (baseTopic is null || task.Spec is null)
        {
            return [];
        }

        // The attempt the stop ends (our extension, docs/compatibility.md): our proplet drops a start of it that arrives
        // after the stop (a retried or recovered publish) and keeps a newer attempt's run from a late stop.
        return Stop(baseTopic, new StopMessage(task.Id.ToString(), task.Spec.Broadcast, task.Spec.Broadcast ? null : task.PropletId, task.Attempt > 0 ? task.Attempt : null));
    }

    /// <summary>The stop of <paramref name="attempt"/> (of its <paramref name="dispatch"/>, when given) of
    /// <paramref name="task"/> on <paramref name="propletId"/> alone: a run the proplet still holds after the manager ended
    /// it or moved on from it (docs/edge.md "What a proplet holds").</summary>
    public IReadOnlyList<OutgoingMessage> ForRun(TaskState task, string propletId, int attempt, int? dispatch)
    {
        ArgumentNullException.ThrowIfNull(task);
        return baseTopic is null ? [] : Stop(baseTopic, new StopMessage(task.Id.ToString(), false, propletId, attempt, dispatch));
    }

    private static OutgoingMessage[] Stop(string baseTopic, StopMessage message) =>
        [new OutgoingMessage(Topics.Of(baseTopic, Topics.Stop), JsonSerializer.SerializeToUtf8Bytes(message))];
}
