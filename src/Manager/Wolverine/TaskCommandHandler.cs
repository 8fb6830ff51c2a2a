using JasperFx.Events;
using Marten;
using Propeller.Application.Aggregates;
using Propeller.Application.Messaging;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Wolverine;
using Propeller.Manager.Tasks;
using Wolverine;
using Wolverine.ErrorHandling;
using Wolverine.Runtime.Handlers;
using Wolverine.Marten;
using static Propeller.Domain.Tasks.TaskCommand;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// The task commands as Wolverine handlers in the aggregate handler workflow (ADR 0014): Wolverine fetches the
/// stream for writing (FetchForWriting, expected version), <see cref="TaskDecider"/> decides, the events go on the
/// stream and the cascaded messages into Wolverine's outbox, committed by Wolverine's transactional middleware in one
/// transaction. A lost race throws JasperFx's ConcurrencyException, which the retry policy answers by deciding again.
/// </summary>
public static class TaskCommandHandler
{
    /// <summary>Create, update, delete, start and stop: the outcome goes back to the caller of InvokeAsync.</summary>
    public static (CommandResult<TaskEvent, TaskState>, OutgoingMessages) Handle(
        RunTaskCommand message, [WriteAggregate(nameof(RunTaskCommand.TaskId), Required = false)] IEventStream<TaskState> stream, IDocumentSession session,
        CommandSessionServices services, StopMessages stops, WolverinePlacement placement)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(stops);
        ArgumentNullException.ThrowIfNull(placement);
        var listener = services.Attach(session, message.Metadata);
        var (result, appended) = Decide(stream, message.Command, listener);
        var outgoing = new OutgoingMessages();
        if (appended.Any(e => e is TaskEvent.TaskStartRequested) && result.State.Status == TaskStatus.Scheduled && placement.Enabled)
        {
            outgoing.Add(new PlaceTask(message.TaskId, message.Metadata.CorrelationId));
        }

        if (appended.Any(e => e is TaskEvent.TaskStopped))
        {
            outgoing.AddRange(stops.For(result.State).Select(ToBroker));
        }

        return (result, outgoing);
    }

    /// <summary>
    /// Places a started task (cascaded from the start): a proplet chosen by the scheduler's policy gets the task, and
    /// the start message leaves through the outbox with the dispatch; with none free the scheduler's sweep takes it.
    /// </summary>
    public static async Task<OutgoingMessages> HandleAsync(
        PlaceTask message, [WriteAggregate(nameof(PlaceTask.TaskId), Required = false)] IEventStream<TaskState> stream, IDocumentSession session,
        CommandSessionServices services, WolverinePlacement placement, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(placement);
        ArgumentNullException.ThrowIfNull(time);
        var outgoing = new OutgoingMessages();
        var state = stream.Aggregate ?? TaskState.Initial;
        if (state.Status != TaskStatus.Scheduled || placement.Placement is not { } scheduler)
        {
            return outgoing;
        }

        if (await scheduler.TryPlaceAsync(state, cancellationToken) is not { } proplet)
        {
            placement.Signals.OfferStart(state);
            return outgoing;
        }

        var now = time.GetUtcNow();
        var listener = services.Attach(session, new(message.CorrelationId, null, "system", now));
        var (result, appended) = Decide(stream, new DispatchTask(state.Id, proplet, now), listener);
        if (appended.Any(e => e is TaskEvent.TaskDispatched))
        {
            outgoing.Add(ToBroker(scheduler.StartMessage(result.State, message.CorrelationId)));
            scheduler.Dispatched(result.State);
        }

        return outgoing;
    }

    private static (CommandResult<TaskEvent, TaskState> Result, IReadOnlyList<TaskEvent> Appended) Decide(IEventStream<TaskState> stream, TaskCommand command, CommandSessionListener listener)
    {
        var state = stream.Aggregate ?? TaskState.Initial;
        var decision = TaskDecider.Decide(command, state);
        if (decision.Rejection is not null || decision.Events.Count == 0)
        {
            return (new CommandResult<TaskEvent, TaskState>(state, stream.CurrentVersion ?? 0, [], decision.Rejection), []);
        }

        foreach (var e in decision.Events)
        {
            state = TaskDecider.Evolve(state, e);
        }

        stream.AppendMany(decision.Events);
        var version = (stream.StartingVersion ?? 0) + decision.Events.Count;
        listener.Committed(TaskAggregate.StreamId(command.TaskId), state, version);
        return (new CommandResult<TaskEvent, TaskState>(state, version, decision.Events, null), decision.Events);
    }

    private static PublishToBroker ToBroker(OutgoingMessage message) =>
        new(message.Destination, message.Payload.ToArray(), message.Headers?.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal));
}

/// <summary>Publishes a start or stop message to the broker from the durable local queue "broker" (after the command's commit).</summary>
public static class BrokerMessageHandler
{
    /// <summary>A failed publish waits and tries again; after that the message is a dead letter in PostgreSQL.</summary>
    public static void Configure(HandlerChain chain)
    {
        ArgumentNullException.ThrowIfNull(chain);
        chain.OnAnyException().ScheduleRetry(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30));
    }

    public static Task HandleAsync(PublishToBroker message, IMessagePublisher publisher, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(publisher);
        return publisher.PublishAsync(new OutgoingMessage(message.Topic, message.Payload, message.Headers), cancellationToken);
    }
}

/// <summary>The scheduler as the placement handler sees it: none when the manager has no broker (nothing to place on).</summary>
public sealed class WolverinePlacement(IServiceProvider services, WorkSignals signals)
{
    public IImmediatePlacement? Placement { get; } = services.GetService<IImmediatePlacement>();

    public WorkSignals Signals { get; } = signals;

    public bool Enabled => Placement is not null;
}
