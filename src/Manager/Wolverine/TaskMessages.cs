using Propeller.Application.EventStore;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// A task command on its way through Wolverine (ADR 0014): the pure command the decider takes, the stream it targets
/// (the aggregate handler workflow reads <see cref="TaskId"/>) and the request's metadata (correlation, user, the
/// plugin decisions as headers), which lands on the events. Invoked in process, never serialized.
/// </summary>
public sealed record RunTaskCommand(TaskId TaskId, TaskCommand Command, EventMetadata Metadata);

/// <summary>A message for the broker (a start or a stop), cascaded in the command's transaction; published from the durable local queue "broker".</summary>
public sealed record PublishToBroker(string Topic, byte[] Payload, Dictionary<string, string>? Headers);
