using FluentValidation;
using JasperFx.CodeGeneration;
using Marten;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Contracts.Tasks;
using Propeller.Infrastructure.Mqtt;
using Propeller.Infrastructure.Scheduling;
using Propeller.Infrastructure.Wolverine;
using Propeller.Manager.Configuration;
using Propeller.Manager.Http;
using Wolverine;
using Wolverine.ErrorHandling;
using Wolverine.Marten;
using Wolverine.Runtime;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// The manager's write side (ADR 0014): Wolverine on Marten with its transactional middleware, durable inbox/outbox tables in the event store's schema, the durable local queue
/// "broker", and the conflict retry policy.
/// </summary>
internal static class WolverinePipeline
{
    /// <summary>How old a durable message failing with a transient PostgreSQL error may get before it is a dead letter.</summary>
    public static readonly TimeSpan TransientRetryCeiling = TimeSpan.FromDays(1);

    private static readonly Lazy<IReadOnlyList<FailureSlot>> LaterRetries = new(() =>
        OwnRetries.Slots(p => p.ScheduleRetry(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(2), TimeSpan.FromMinutes(5))));

    /// <summary>What follows a transient failure's quick tries: a scheduled try 5 s, 30 s, 2 min, then every 5 min ahead
    /// (by the envelope's attempts), or, once the message is <see cref="TransientRetryCeiling"/> old, a dead letter.</summary>
    internal static IContinuation AfterTransientRetries(Exception ex, Envelope envelope, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        var later = LaterRetries.Value;
        return now - envelope.SentAt >= TransientRetryCeiling
            ? OwnRetries.DeadLetter(ex, envelope)
            : OwnRetries.Continue(later[Math.Clamp((envelope.Attempts - 1) / 4, 0, later.Count - 1)], ex, envelope);
    }

    /// <summary>
    /// Integrates Wolverine with the Marten registration (its envelope tables beside Marten's). With
    /// <paramref name="distributeProjections"/> (Balanced mode) Wolverine runs Marten's async projections itself, each on
    /// exactly one node of the cluster (its managed subscription distribution replaces Marten's own daemon, which must
    /// then not be added).
    /// </summary>
    public static void IntegrateMarten(MartenServiceCollectionExtensions.MartenConfigurationExpression marten, string schema, bool distributeProjections) =>
        marten.IntegrateWithWolverine(w =>
        {
            w.MessageStorageSchemaName = schema;
            w.UseWolverineManagedEventSubscriptionDistribution = distributeProjections;
        });

    /// <summary>
    /// The configuration `propeller-manager codegen` generates the handler code under: the Wolverine pipeline with a
    /// broker, so every handler's dependencies are registered (the generated code is the same for every configuration
    /// the pipeline runs in: the handlers' services are registered whatever the settings).
    /// </summary>
    public static void ConfigureForCodegen(WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Configuration["MANAGER_MQTT_ADDRESS"] = "tcp://127.0.0.1:1883";
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
    }

    /// <summary>
    /// Placement, the sweep and liveness on Wolverine (decision 13), where a broker is configured: the planner and the
    /// scheduling service the handlers use, and one sweep at start (waiting tasks of before the restart, timers lost).
    /// </summary>
    public static void AddWolverineScheduling(this IServiceCollection services)
    {
        services.TryAddSingleton<PlacementsInFlight>();
        services.TryAddSingleton<PlacementPlanner>();
        services.TryAddSingleton<WolverineScheduling>();
        services.AddHostedService<SweepAtStart>();
        services.AddHostedService<SweepChainWatch>();
    }

    public static void AddWolverinePipeline(
        this WebApplicationBuilder builder, DurabilityModeSetting durability, TimeSpan staleNodeTimeout, int commandBatches, TimeSpan deadLetterRetention)
    {
        builder.Services.TryAddSingleton<CommandSessionServices>();
        builder.Services.TryAddSingleton(sp => ActivatorUtilities.CreateInstance<TaskCommandBatcher>(sp, commandBatches));
        builder.Services.AddHostedService(sp => sp.GetRequiredService<TaskCommandBatcher>());
        builder.Services.TryAddSingleton<HandledEnvelopeMarks>();
        builder.Services.TryAddSingleton<LateStarts>();
        builder.Services.TryAddSingleton<UnsendableStarts>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<HandledEnvelopeMarks>());
        builder.Services.TryAddSingleton<WolverinePlacement>();
        builder.Services.TryAddSingleton<HeldTasksReconciler>();
        builder.Services.TryAddSingleton<WolverineTaskCommands>();
        builder.Services.TryAddSingleton<IValidator<RunTaskCommand>, RunTaskCommandValidator>();
        builder.Services.TryAddSingleton<IInboundCommands, WolverineInboundCommands>();
        builder.Services.TryAddSingleton<DeadLetterMetrics>();
        builder.Services.ConfigureMarten(o => o.Schema.For<SchedulerTimer>().DocumentAlias("scheduler_timer"));
        builder.Host.UseWolverine(opts =>
        {
            opts.ApplicationAssembly = typeof(WolverinePipeline).Assembly;
            opts.ServiceName = "propeller-manager";

            // Durability (ADR 0014): Balanced for several nodes on one database (leader election, agents assigned by
            // the leader, a dead node's envelopes recovered once it is declared stale), Solo for one node per database.
            // The heartbeat runs at a fifth of the stale timeout, so a node is declared dead after about five missed
            // beats, and the leader ejects it after two consecutive stale observations (StaleNodeEjectionThreshold).
            opts.Durability.Mode = durability == DurabilityModeSetting.Solo ? DurabilityMode.Solo : DurabilityMode.Balanced;
            opts.Durability.StaleNodeTimeout = staleNodeTimeout;
            opts.Durability.HealthCheckPollingTime = staleNodeTimeout / 5;

            // Dead letters expire after MANAGER_DEAD_LETTER_RETENTION (Wolverine's own expiration, off by default): a
            // start message carries the task's module, and the table grew for ever while /metrics counts it per scrape.
            opts.Durability.DeadLetterQueueExpirationEnabled = deadLetterRetention > TimeSpan.Zero;
            if (deadLetterRetention > TimeSpan.Zero)
            {
                opts.Durability.DeadLetterQueueExpiration = deadLetterRetention;
            }

            opts.Policies.AutoApplyTransactions();

            // Middleware (ADR 0014): FluentValidation before every handler whose message has validators, then the
            // plugin gate around the task commands (authorize and enrich before the decision, on_task_start after
            // the commit).
            opts.Policies.Add<FluentValidationPolicy>();
            opts.Policies.AddMiddleware(typeof(PluginGateMiddleware), chain => chain.MessageType == typeof(RunTaskCommand));
            opts.Policies.UseDurableLocalQueues();
            opts.PublishMessage<PublishToBroker>().ToLocalQueue("broker");
            opts.LocalQueue("broker").UseDurableInbox();

            // Placement, the sweep and liveness timers (decision 13): durable local queues "scheduling" and "sweeps"; the timers are
            // scheduled messages in Wolverine's incoming envelopes, which the durability agent looks for every second
            // (default 5 s: a liveness check could fire up to 5 s late).
            opts.PublishMessage<PlaceTasks>().ToLocalQueue("scheduling");
            opts.PublishMessage<PlaceSweepPage>().ToLocalQueue("scheduling");
            opts.PublishMessage<SweepWaitingTasks>().ToLocalQueue("sweeps");
            opts.PublishMessage<KeepSweepChain>().ToLocalQueue("sweeps");
            opts.PublishMessage<CheckLiveness>().ToLocalQueue("scheduling");
            opts.PublishMessage<RedispatchTasksOf>().ToLocalQueue("scheduling");
            opts.LocalQueue("scheduling").UseDurableInbox();

            // Sweeps one at a time on a node: three proplets discovered at once send three sweeps, and in parallel
            // they would all place the same oldest tasks and lose races to each other (measured: a storm of conflict
            // retries); in turn, each places what the one before left.
            opts.LocalQueue("sweeps").Sequential().UseDurableInbox();
            opts.Durability.ScheduledJobPollingTime = TimeSpan.FromSeconds(1);

            // A lost race on a stream decides again on the new state (Marten's optimistic concurrency): as many tries
            // as our CommandHandler's and more, each after a short, jittered pause, so many writers on one stream
            // (twelve in the test) all get through. Each rule counts only its own failures (OwnRetries): Wolverine's
            // slots are numbered by the envelope's attempts of any kind, so a message that lost races first found a
            // later transient error's tries used up (and the other way round) and was a dead letter at once.
            opts.OnException<JasperFx.ConcurrencyException>().ContinueWith(new OwnRetries(
                "conflict", OwnRetries.Slots(p => p.RetryWithCooldown([.. Enumerable.Range(0, 12).Select(i => TimeSpan.FromMilliseconds(Math.Min(2 << i, 100)))]).WithFullJitter()),
                OwnRetries.DeadLetter, "a dead letter"));
            opts.OnException<Marten.Exceptions.ExistingStreamIdCollisionException>().ContinueWith(new OwnRetries(
                "stream-collision", OwnRetries.Slots(p => p.RetryTimes(3)), OwnRetries.DeadLetter, "a dead letter"));

            // PostgreSQL unreachable, restarting or deadlocked (also wrapped in Marten's errors): tried again shortly
            // (three times in a row), then later, for as long as it takes: a durable message (placement, the sweep and
            // liveness links, a re-dispatch) decides on the state it finds, so another try is always safe, and the sweep
            // and liveness timers are chains in which each link schedules the next, so a link lost to a failover would
            // have stopped its chain. The later try is scheduled 5 s, 30 s, 2 min, then every 5 min ahead, by the
            // envelope's attempts (each scheduled try begins with its three quick ones again), until the message is a
            // day old: then it is a dead letter (listed, replayable), for a "transient" failure that is in fact the
            // message's own for good (a statement that always hits its timeout, 57014, matches too) was retried unseen
            // for ever. A message invoked inline (a command of the API, a proplet's result) gets the quick tries; then
            // its caller gets the error.
            opts.OnException(Infrastructure.PostgresFailures.IsTransient, "PostgreSQL unreachable or transient").ContinueWith(new OwnRetries(
                "transient", OwnRetries.Slots(p => p.RetryWithCooldown(TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1))),
                (ex, envelope) => AfterTransientRetries(ex, envelope, DateTimeOffset.UtcNow),
                "a scheduled retry until the message is a day old, then a dead letter"));

            opts.CodeGeneration.TypeLoadMode = TypeLoadMode.Static;
        });
    }
}

/// <summary>
/// The task routes' way into the Wolverine pipeline: the request's metadata on the command, InvokeAsync, the outcome.
/// The middleware's refusals come back as exceptions and leave here as the routes' answers: a failed validation 400,
/// a plugin's deny 403, each with <c>{"error": ...}</c>.
/// </summary>
public sealed class WolverineTaskCommands(TaskCommandBatcher batcher)
{
    /// <summary>
    /// Sends <paramref name="command"/> with the request's metadata; <paramref name="headers"/> are plugin decisions the
    /// route made itself (an invocation's, authorized before it ran), stored with the events.
    /// </summary>
    public async Task<(CommandResult<TaskEvent, TaskState>? Result, IResult? Refused)> SendAsync(
        TaskCommand command, HttpRequest request, TaskJson? body, CancellationToken cancellationToken, IReadOnlyDictionary<string, string>? headers = null)
    {
        ArgumentNullException.ThrowIfNull(command);
        var metadata = Metadata(request, command.At, headers);
        try
        {
            return (await batcher.InvokeAsync(new RunTaskCommand(command.TaskId, command, metadata, body), cancellationToken), null);
        }
        catch (ValidationException ex)
        {
            return (null, ApiResults.BadRequest(FluentValidationMiddleware.Reason(ex)));
        }
        catch (PluginDeniedException ex)
        {
            return (null, ApiResults.Error(StatusCodes.Status403Forbidden, ex.Message));
        }
        catch (GateRaceException ex)
        {
            return (null, ApiResults.Error(StatusCodes.Status409Conflict, ex.Message));
        }
    }

    /// <summary>
    /// A command's metadata from its request: X-User-Id as the user, X-Correlation-Id (or the request id) as the
    /// correlation id, <paramref name="at"/> as the time, <paramref name="headers"/> stored with the events.
    /// </summary>
    public static EventMetadata Metadata(HttpRequest request, DateTimeOffset at, IReadOnlyDictionary<string, string>? headers = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        var user = request.Headers["X-User-Id"].FirstOrDefault();
        var correlation = request.Headers["X-Correlation-Id"].FirstOrDefault() ?? request.HttpContext.TraceIdentifier;
        return new EventMetadata(correlation, null, string.IsNullOrEmpty(user) ? null : user, at, headers);
    }

    /// <summary>The route's answer: the refusal, the decider's rejection, or <paramref name="ok"/> with the new state.</summary>
    public static IResult Answer((CommandResult<TaskEvent, TaskState>? Result, IResult? Refused) outcome, Func<TaskState, IResult> ok)
    {
        ArgumentNullException.ThrowIfNull(ok);
        return outcome.Refused ?? (outcome.Result!.Rejection is { } rejection ? ApiResults.From(rejection) : ok(outcome.Result.State));
    }
}

/// <summary>
/// What proplets send, into the Wolverine pipeline (ADR 0014): results to the task command handler (RecordResult,
/// TaskDecider), discovery, Last Will and coming back online to <see cref="PropletCommandHandler"/> (PropletDecider),
/// each in the aggregate handler workflow and committed before InvokeAsync returns, so the MQTT connection acknowledges
/// the message only after its effect is committed.
/// </summary>
public sealed class WolverineInboundCommands(IWolverineRuntime runtime, TaskCommandBatcher batcher) : IInboundCommands
{
    public Task RecordResultAsync(TaskCommand.RecordResult command, EventMetadata metadata, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        return new MessageBus(runtime).InvokeAsync<CommandResult<TaskEvent, TaskState>>(new RunTaskCommand(command.TaskId, command, metadata), cancellationToken);
    }

    /// <summary>
    /// A broker batch's results join the API's task commands in <see cref="TaskCommandBatcher"/> (ADR 0016): they commit
    /// in the same transactions as the creates and starts waiting with them, fewer and larger ones than a transaction of
    /// results beside each batch of commands. A task's second result (a redelivery) goes in a later round, deciding on
    /// the state the first left; <c>on_task_complete</c> follows each commit. Returns once every result is committed, so
    /// the broker batch is acknowledged only then; says which failed (the caller records those again alone; a committed
    /// one decided again would be a second, ignored result and a second on_task_complete).
    /// </summary>
    public async Task<IReadOnlyList<Exception?>> RecordResultsAsync(IReadOnlyList<(TaskCommand.RecordResult Command, EventMetadata Metadata)> results, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(results);
        var recorded = results.Select(r => batcher.InvokeAsync(new RunTaskCommand(r.Command.TaskId, r.Command, r.Metadata), cancellationToken)).ToList();
        try
        {
            await Task.WhenAll(recorded);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            // each one's outcome is read below
        }

        cancellationToken.ThrowIfCancellationRequested();
        return [.. recorded.Select(r => r.IsCompletedSuccessfully ? null : r.Exception?.InnerException ?? new OperationCanceledException("the result's command was cancelled"))];
    }

    public async Task<Domain.Common.Rejection?> HandlePropletAsync(PropletCommand command, EventMetadata metadata, CancellationToken cancellationToken) =>
        (await new MessageBus(runtime).InvokeAsync<CommandResult<PropletEvent, PropletState>>(RunPropletCommand.For(command, metadata), cancellationToken)).Rejection;

    public Task ReconcileHeldAsync(string propletId, IReadOnlyDictionary<Guid, HeldRun> held, DateTimeOffset reportedAt, bool? sessionPresent, CancellationToken cancellationToken) =>
        new MessageBus(runtime).InvokeAsync(new ReconcileHeldTasks(propletId, held, reportedAt, sessionPresent), cancellationToken);
}

/// <summary>
/// Sends one <see cref="SweepWaitingTasks"/> once Wolverine runs: places what waited across a restart and makes sure
/// the sweep chain runs. A failed publish (PostgreSQL unreachable at start-up) is logged and retried with backoff
/// until it is sent or the host stops; otherwise no sweep would run until the next proplet event.
/// </summary>
internal sealed partial class SweepAtStart(IHostApplicationLifetime lifetime, IWolverineRuntime runtime, ILogger<SweepAtStart> logger) : IHostedService
{
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan MaxRetry = TimeSpan.FromSeconds(30);

    private Task _publishing = Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(() => _publishing = PublishUntilSentAsync(lifetime.ApplicationStopping));
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _publishing.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // Shutdown's time is up: the retry loop ends on ApplicationStopping by itself.
        }
    }

    private async Task PublishUntilSentAsync(CancellationToken stopping)
    {
        var delay = FirstRetry;
        for (var attempt = 1; !stopping.IsCancellationRequested; attempt++)
        {
            try
            {
                await new MessageBus(runtime).PublishAsync(new SweepWaitingTasks(null));
                return;
            }
            catch (Exception ex) when (!stopping.IsCancellationRequested)
            {
                LogSweepNotPublished(logger, attempt, delay, ex);
            }
            catch (Exception)
            {
                return; // the host stops: the next start sweeps
            }

            // Ends early when the host stops (the loop's condition then ends it).
            await Task.Delay(delay, stopping).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetry.Ticks));
        }
    }

    [LoggerMessage(EventId = 6107, Level = LogLevel.Warning, Message = "The start-up sweep of waiting tasks could not be published (attempt {Attempt}); trying again in {Delay}")]
    private static partial void LogSweepNotPublished(ILogger logger, int attempt, TimeSpan delay, Exception exception);
}

/// <summary>
/// Retries of one kind of failure that count only failures of that kind. A Wolverine failure rule acts on the slot
/// numbered by the envelope's total attempts, which includes failures other rules caught: a scheduling message that lost
/// seven stream races then met a transient PostgreSQL error found the transient rule's seven slots used up and was a dead
/// letter at once; a start that timed out four times then was refused once was a dead letter with no retry. This source,
/// plugged into a rule with <c>ContinueWith</c> (applied on every attempt), counts its own failures in an envelope header
/// and carries out Wolverine's own continuation for that step (<see cref="Steps"/>: built with Wolverine's policy DSL),
/// then <see cref="After"/>'s once they are used up. The header lives as long as the envelope in memory: across inline
/// retries, not a scheduled retry (Wolverine stores only the attempt count and reads the envelope again from PostgreSQL),
/// so it counts the failures of one run of inline retries; it is removed when the steps are used up, so a dead letter
/// replayed later starts afresh.
/// </summary>
internal sealed class OwnRetries(string kind, IReadOnlyList<FailureSlot> steps, Func<Exception, Envelope, IContinuation> after, string afterDescription) : IContinuationSource
{
    private readonly string _header = "propeller-retries-" + kind;

    /// <summary>Wolverine's continuation for each own failure, in turn.</summary>
    public IReadOnlyList<FailureSlot> Steps => steps;

    /// <summary>What follows once the steps are used up (a dead letter, a scheduled retry).</summary>
    public Func<Exception, Envelope, IContinuation> After => after;

    public string Description => $"{kind}: {string.Join(", then ", steps.Select(s => s.Describe()))}, then {afterDescription} (counting only {kind} failures)";

    public IContinuation Build(Exception ex, Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        var count = (envelope.Headers.TryGetValue(_header, out var value) && int.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, out var n) ? n : 0) + 1;
        if (count <= steps.Count)
        {
            envelope.Headers[_header] = count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Continue(steps[count - 1], ex, envelope);
        }

        envelope.Headers.Remove(_header);
        return after(ex, envelope);
    }

    /// <summary>Wolverine's continuations as its policy DSL builds them (<paramref name="policy"/> on a rule matching
    /// everything), one slot per step.</summary>
    public static IReadOnlyList<FailureSlot> Slots(Action<PolicyExpression> policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var holder = new Holder();
        policy(holder.OnException(_ => true, "any"));
        return [.. holder.Failures.Single()];
    }

    /// <summary>Wolverine's dead letter continuation.</summary>
    public static IContinuation DeadLetter(Exception ex, Envelope envelope) => Continue(DeadLetterSlot.Value, ex, envelope);

    /// <summary>The continuation Wolverine's <paramref name="slot"/> builds for this failure.</summary>
    public static IContinuation Continue(FailureSlot slot, Exception ex, Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(slot);
        return slot.Build(ex, envelope) ?? throw new InvalidOperationException($"Wolverine built no continuation for \"{slot.Describe()}\"");
    }

    private static readonly Lazy<FailureSlot> DeadLetterSlot = new(() => Slots(p => p.MoveToErrorQueue())[0]);

    private sealed class Holder : IWithFailurePolicies
    {
        public FailureRuleCollection Failures { get; } = new();
    }
}

/// <summary>
/// A retry that is not counted as an attempt: the envelope's attempt count is put back before it is scheduled again, so
/// the rules that count attempts (a refused publish's four retries) see only the failures that were not this kind.
/// For failures that say nothing about the message (the broker or PostgreSQL unreachable), retried for as long as it
/// takes: the pause grows with the message's age (<see cref="Delay"/>), since the attempt count no longer tells.
/// </summary>
internal sealed class UncountedRetry(IReadOnlyList<TimeSpan> ages, IReadOnlyList<FailureSlot> retries, string description) : IContinuationSource
{
    public string Description => description;

    /// <summary>The retry for a message of this age: the one at the index of the first age bound it is under (one retry
    /// more than bounds: the last is for any older message).</summary>
    public FailureSlot Delay(TimeSpan age)
    {
        var index = 0;
        while (index < ages.Count && age >= ages[index])
        {
            index++;
        }

        return retries[Math.Min(index, retries.Count - 1)];
    }

    public IContinuation Build(Exception ex, Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        return new PutBack(OwnRetries.Continue(Delay(DateTimeOffset.UtcNow - envelope.SentAt), ex, envelope));
    }

    private sealed class PutBack(IContinuation inner) : IContinuation
    {
        public ValueTask ExecuteAsync(IEnvelopeLifecycle lifecycle, IWolverineRuntime runtime, DateTimeOffset now, System.Diagnostics.Activity? activity)
        {
            if (lifecycle.Envelope is { Attempts: > 0 } envelope)
            {
                envelope.Attempts--;
            }

            return inner.ExecuteAsync(lifecycle, runtime, now, activity);
        }
    }
}
