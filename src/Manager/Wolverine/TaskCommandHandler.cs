using System.Diagnostics.Metrics;
using System.Text.Json;
using JasperFx.Events;
using Marten;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Application.Plugins;
using Propeller.Application.Tasks;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Mqtt;
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
    /// <summary>
    /// Create, update, delete, start and stop; the outcome goes back to the caller of InvokeAsync. The validation and
    /// plugin gate middleware ran before (<see cref="FluentValidationMiddleware"/>, <see cref="PluginGateMiddleware"/>):
    /// <paramref name="gated"/> is the command to decide and the metadata with the plugin decisions. A start is placed
    /// in the same transaction when no plugins take part in placement (dispatched with its start message cascaded into
    /// the outbox, or deferred with the wait reason and the sweep chain made sure of); with plugins, placement is the
    /// cascaded <see cref="PlaceTasks"/> (their select and dispatch hooks run there). A stop cascades the original's
    /// stop message.
    /// </summary>
    public static async Task<(CommandResult<TaskEvent, TaskState>, OutgoingMessages)> HandleAsync(
        RunTaskCommand message, GatedCommand gated, [WriteAggregate(nameof(RunTaskCommand.TaskId), Required = false)] IEventStream<TaskState> stream, IDocumentSession session,
        CommandSessionServices services, StopMessages stops, WolverinePlacement placement, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(gated);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(services);
        if (PluginGateMiddleware.IsStale(gated, stream.Aggregate))
        {
            // The plugins authorized the command on the task before another command changed it: gated again by the
            // caller (TaskCommandBatcher), nothing decided here.
            throw new StaleGateException(message.TaskId);
        }

        var outgoing = new OutgoingMessages();
        var result = await DecideAsync(message, gated, stream.Aggregate, stream.CurrentVersion ?? 0, session, stops, placement, outgoing, cancellationToken);
        if (result.Appended.Count > 0)
        {
            services.Attach(session, gated.Metadata).Append(stream, TaskAggregate.StreamId(message.TaskId), result.Appended, result.State, gated.Metadata);
        }

        return (result, outgoing);
    }

    /// <summary>
    /// The decision of one gated task command on its task as it stands (<paramref name="current"/> at
    /// <paramref name="version"/>; null for a task that does not exist), shared by this handler and the batch of
    /// <see cref="RunTaskCommandsHandler"/>: the decider's events, a start's placement in the same transaction (or a
    /// cascaded <see cref="PlaceTasks"/>), a stop's message, each added to <paramref name="outgoing"/>. The caller
    /// appends <see cref="CommandResult{TEvent,TState}.Appended"/>; the result's version is the stream's after them.
    /// </summary>
    public static async Task<CommandResult<TaskEvent, TaskState>> DecideAsync(
        RunTaskCommand message, GatedCommand gated, TaskState? current, long version, IDocumentSession session,
        StopMessages stops, WolverinePlacement placement, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(gated);
        ArgumentNullException.ThrowIfNull(stops);
        ArgumentNullException.ThrowIfNull(placement);
        ArgumentNullException.ThrowIfNull(outgoing);
        var before = current ?? TaskState.Initial;
        var decision = TaskDecider.Decide(gated.Command, before);
        if (decision.Rejection is not null || decision.Events.Count == 0)
        {
            return new CommandResult<TaskEvent, TaskState>(before, version, [], decision.Rejection);
        }

        IReadOnlyList<TaskEvent> events = decision.Events;
        var state = Fold(before, events);
        if (gated.Command is StartTask && state.Status == TaskStatus.Scheduled && placement.Scheduling is { } scheduling)
        {
            if (await scheduling.Planner.PlanAtOnceAsync(state, cancellationToken) is not { } plan)
            {
                outgoing.Add(new PlaceTasks([message.TaskId.Value]));
            }
            else
            {
                var (placed, after, start) = scheduling.Decide(plan, state, gated.Metadata.CorrelationId);
                events = [.. events, .. placed];
                state = after;
                if (start is not null)
                {
                    outgoing.Add(start);
                }
                else if (state.Status == TaskStatus.Scheduled)
                {
                    await scheduling.EnsureSweepAsync(session, outgoing, waiting: true, cancellationToken);
                }
            }
        }

        if (events.Any(e => e is TaskEvent.TaskStopped))
        {
            outgoing.AddRange(stops.For(state).Select(PublishToBroker.From));
        }

        return new CommandResult<TaskEvent, TaskState>(state, version + events.Count, events, null);
    }

    private static TaskState Fold(TaskState state, IEnumerable<TaskEvent> events) => events.Aggregate(state, TaskDecider.Evolve);
}

/// <summary>Publishes a start or stop message to the broker from the durable local queue "broker" (after the command's commit).</summary>
public static class BrokerMessageHandler
{
    /// <summary>
    /// A message that can never be published (an empty topic: ArgumentException) is a dead letter at once. One that
    /// fails because the broker or PostgreSQL cannot be reached now (no connection or no acknowledgement within
    /// MANAGER_MQTT_TIMEOUT: TimeoutException; PostgreSQL's transient errors) waits in PostgreSQL and is tried again for
    /// as long as it takes, after a pause that grows with the message's age (0.1 s while it is under a second old, 1 s
    /// under 10 s, 5 s under a minute, then every 30 s): as a dead letter, its task would stay Running on a proplet that
    /// never got it. Any other failed publish (the broker refuses it) is tried again four times (after 0.1, 1, 5 and
    /// 30 s), then it is a dead letter in PostgreSQL (GET /dead-letters, replayable). Those four are counted by the
    /// envelope's attempts, which is why a failure of the first kind is not counted as one (<see cref="UncountedRetry"/>):
    /// Wolverine numbers a rule's slots by all attempts, and a start that timed out four times was a dead letter at its
    /// first refusal.
    /// </summary>
    public static void Configure(HandlerChain chain)
    {
        ArgumentNullException.ThrowIfNull(chain);
        chain.OnException<ArgumentException>().MoveToErrorQueue();
        chain.OnException<BrokerPublishException>(e => e.MaximumPacketSize is not null, "larger than the broker's maximum packet size").MoveToErrorQueue();
        chain.OnException(Infrastructure.PostgresFailures.IsTransient, "broker or PostgreSQL unreachable").ContinueWith(new UncountedRetry(
            [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(1)],
            OwnRetries.Slots(p => p.ScheduleRetry(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30))),
            "a scheduled retry for as long as it takes, not counted as an attempt"));
        chain.OnAnyException().ScheduleRetry(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Publishes <paramref name="message"/>, unless it is a late start its task has moved on from (<see cref="LateStarts"/>);
    /// once the broker has it, the envelope's handled mark goes in the next batch of <paramref name="marks"/> (ADR 0016
    /// decision 7) instead of a transaction of its own. A start larger than the broker's Maximum Packet Size can never be
    /// sent: its run fails at once with the broker's refusal as the error (<see cref="UnsendableStarts"/>), where retries
    /// and a dead letter left the task Running on a proplet that never got it. Any other message of that size is a dead
    /// letter at once (<see cref="Configure"/>).
    /// </summary>
    public static async Task HandleAsync(
        PublishToBroker message, Envelope envelope, IMessagePublisher publisher, HandledEnvelopeMarks marks, LateStarts lateStarts, TaskModules modules,
        UnsendableStarts unsendable, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(envelope);
        ArgumentNullException.ThrowIfNull(publisher);
        ArgumentNullException.ThrowIfNull(marks);
        ArgumentNullException.ThrowIfNull(lateStarts);
        ArgumentNullException.ThrowIfNull(modules);
        ArgumentNullException.ThrowIfNull(unsendable);
        if (!await lateStarts.IsOvertakenAsync(message, envelope.SentAt, cancellationToken))
        {
            // A large module goes in now (ADR 0018): a missing one fails this publish, retried, then a dead letter; one the
            // task no longer has (an update replaced it since the dispatch) fails the run instead: retried and replayed, the
            // start would fail the same way, and the task stayed Running on a proplet that never got it.
            byte[] payload;
            try
            {
                payload = message.ModuleOf is { } taskId ? await modules.ResolveStartAsync(message.Payload, new TaskId(taskId), cancellationToken) : message.Payload;
            }
            catch (TaskModuleReplacedException e)
            {
                if (!await unsendable.FailReplacedAsync(message, e, envelope.CorrelationId, cancellationToken))
                {
                    throw;
                }

                marks.Add(envelope);
                return;
            }

            try
            {
                await publisher.PublishAsync(new OutgoingMessage(message.Topic, payload, message.Headers), cancellationToken);
            }
            catch (BrokerPublishException e) when (e.MaximumPacketSize is not null)
            {
                // Not a start (or not one with a task id): a dead letter at once (Configure).
                if (!await unsendable.FailTooLargeAsync(message, e, envelope.CorrelationId, cancellationToken))
                {
                    throw;
                }
            }
        }

        marks.Add(envelope);
    }
}

/// <summary>
/// A start that can never be published: its packet larger than the broker's Maximum Packet Size (MQTT 5), or its large
/// module replaced by an update since it was sent. The run it begins is recorded as failed with the reason as its error,
/// through the same command as a proplet's result (the decider ignores it when the task moved on), and logged; a
/// too-large one is counted (<c>manager_starts_too_large</c>).
/// </summary>
public sealed partial class UnsendableStarts(IInboundCommands inbound, TimeProvider time, ILogger<UnsendableStarts> logger)
{
    private static readonly Counter<long> Failed = ManagerMeter.Meter.CreateCounter<long>(
        "manager_starts_too_large", "{message}", "Start messages larger than the broker's maximum packet size, their runs failed");

    private static readonly string StartSuffix = "/" + Topics.Start;

    /// <summary>Fails the run <paramref name="message"/> begins, the broker having refused it for its size; false when it
    /// is not a start with a task id (the caller lets the refusal go on).</summary>
    public Task<bool> FailTooLargeAsync(PublishToBroker message, BrokerPublishException refusal, string? correlationId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(refusal);
        return FailAsync(message, refusal.Message, correlationId, id =>
        {
            Failed.Add(1);
            LogTooLarge(logger, id, refusal.PacketSize ?? 0, refusal.MaximumPacketSize ?? 0);
        }, cancellationToken);
    }

    /// <summary>Fails the run <paramref name="message"/> begins, its large module replaced by an update since it was sent
    /// (<see cref="TaskModuleReplacedException"/>); false when it is not a start with a task id.</summary>
    public Task<bool> FailReplacedAsync(PublishToBroker message, TaskModuleReplacedException replaced, string? correlationId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(replaced);
        return FailAsync(message, replaced.Message, correlationId, id => LogReplaced(logger, id), cancellationToken);
    }

    /// <summary>Records the run the start <paramref name="message"/> begins as failed with <paramref name="error"/>, as a
    /// proplet's result would (its payload read once, here).</summary>
    private async Task<bool> FailAsync(PublishToBroker message, string error, string? correlationId, Action<string> log, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (!message.Topic.EndsWith(StartSuffix, StringComparison.Ordinal) || StartOf(message.Payload) is not { } start || !Guid.TryParse(start.Id, out var id))
        {
            return false;
        }

        log(start.Id);
        var now = time.GetUtcNow();
        var failed = new RecordResult(new TaskId(id), null, error, now, start.Broadcast ? null : start.PropletId, start.Attempt, Dispatch: start.Dispatch);
        await inbound.RecordResultAsync(failed, new EventMetadata(correlationId, null, PluginAuthContext.SystemUser, now, null), cancellationToken);
        return true;
    }

    private static StartMessage? StartOf(byte[] payload)
    {
        try
        {
            return JsonSerializer.Deserialize<StartMessage>(payload);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    [LoggerMessage(EventId = 6109, Level = LogLevel.Error, Message = "The start of task {TaskId} ({PacketSize} bytes) is larger than the broker's maximum packet size ({MaximumPacketSize} bytes): its run failed")]
    private static partial void LogTooLarge(ILogger logger, string taskId, long packetSize, long maximumPacketSize);

    [LoggerMessage(EventId = 6111, Level = LogLevel.Error, Message = "The start of task {TaskId} refers to a large module an update has replaced since it was sent: its run failed")]
    private static partial void LogReplaced(ILogger logger, string taskId);
}

/// <summary>Scheduling as the start handler sees it: none when the manager has no broker (nothing to place on).</summary>
public sealed class WolverinePlacement(IServiceProvider services)
{
    public WolverineScheduling? Scheduling { get; } = services.GetService<WolverineScheduling>();
}
