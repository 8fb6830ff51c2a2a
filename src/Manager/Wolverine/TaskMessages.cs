using Propeller.Application.EventStore;
using Propeller.Application.Plugins;
using Propeller.Contracts.Tasks;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// A task command on its way through Wolverine (ADR 0014): the pure command the decider takes, the stream it targets
/// (the aggregate handler workflow reads <see cref="TaskId"/>), the request's metadata (correlation, user), which
/// lands on the events, and for a create the request body, which the validation middleware checks before the handler
/// (the command's spec is mapped from it). Invoked in process, never serialized. <paramref name="Gated"/> is the plugin
/// gate's outcome when the gate already ran on the submitter's flow (<see cref="TaskCommandBatcher"/> gates a command
/// before it queues it, so a slow plugin holds up only its own request): the gate middleware then hands it on instead
/// of asking the plugins again, so a command run again alone after its batch failed keeps the decision it was queued
/// with.
/// </summary>
public sealed record RunTaskCommand(TaskId TaskId, TaskCommand Command, EventMetadata Metadata, TaskJson? Body = null, GatedCommand? Gated = null);

/// <summary>
/// What the plugin gate middleware hands the handler: the command to decide (a create enriched by <c>enrich_task</c>),
/// the metadata with every plugin decision as headers, and the task as the gate read it (<paramref name="Before"/>:
/// what <c>authorize</c> of an update, start, stop or delete was shown of it, null when it did not exist; a start's is
/// also what <c>on_task_start</c> gets). <paramref name="Read"/>: whether the plugins decided on the stored task, so
/// the handler must check that the task it decides on is still that one (<see cref="PluginGateMiddleware.IsStale"/>).
/// </summary>
public sealed record GatedCommand(TaskCommand Command, EventMetadata Metadata, PluginTaskInfo? Before, bool Read = false);

/// <summary>A plugin said no: the command is not decided; the route answers 403 with <see cref="Exception.Message"/> as the error.</summary>
public sealed class PluginDeniedException(string reason) : Exception(reason);

/// <summary>
/// The task changed between the plugin gate's read and the command's decision (another command committed on it), so the
/// plugins' decision was about a task that no longer is: nothing is decided; the command is gated again on the task as
/// it now stands (<see cref="TaskCommandBatcher"/>).
/// </summary>
public sealed class StaleGateException(TaskId taskId)
    : Exception($"task {taskId} changed after the plugins authorized its command; it is authorized again");

/// <summary>
/// A command's task changed under it every time the plugins authorized it (<see cref="TaskCommandBatcher.MaxGates"/>
/// times): the route answers 409 with <see cref="Exception.Message"/> as the error and nothing is decided.
/// </summary>
public sealed class GateRaceException(TaskId taskId, int gates)
    : Exception($"task {taskId} changed each of the {gates} times its command was authorized; try again");

/// <summary>
/// A message for the broker (a start or a stop), cascaded in the command's transaction; published from the durable local
/// queue "broker". <paramref name="ModuleOf"/>: the task whose large module the start refers to (ADR 0018), put in just
/// before it is published, so the queue's envelope holds the reference and not the module.
/// </summary>
public sealed record PublishToBroker(string Topic, byte[] Payload, Dictionary<string, string>? Headers, Guid? ModuleOf = null)
{
    public static PublishToBroker From(Application.Messaging.OutgoingMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return new(message.Destination, message.Payload.ToArray(), message.Headers?.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal));
    }
}
