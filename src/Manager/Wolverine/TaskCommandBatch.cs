using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading.Channels;
using FluentValidation;
using JasperFx.Events;
using Marten;
using Propeller.Application.Aggregates;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Wolverine;
using Propeller.Manager.Plugins;
using Propeller.Manager.Tasks;
using Wolverine;
using Wolverine.Runtime;
using static Propeller.Domain.Tasks.TaskCommand;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// API task commands that arrived together, each for a different task, decided and committed as one Wolverine command
/// (ADR 0016): one Marten session, one batched fetch for writing, one commit with every stream's events, views and
/// cascaded messages. Invoked in process by <see cref="TaskCommandBatcher"/>, never serialized.
/// </summary>
public sealed record RunTaskCommands(IReadOnlyList<RunTaskCommand> Commands);

/// <summary>
/// What one command of a <see cref="RunTaskCommands"/> came to: its result and the gated command (for the plugin
/// notifications after the commit). No result: its task changed after the plugins authorized the command
/// (<see cref="PluginGateMiddleware.IsStale"/>), so it was not decided and must be gated again.
/// </summary>
public sealed record TaskCommandOutcome(CommandResult<TaskEvent, TaskState>? Result, GatedCommand Gated);

/// <summary>The outcomes of a <see cref="RunTaskCommands"/>, in the batch's order.</summary>
public sealed record TaskCommandOutcomes(IReadOnlyList<TaskCommandOutcome> Outcomes);

/// <summary>
/// Decides a batch of task commands in one transaction (ADR 0016). Every command comes already validated and gated
/// (<see cref="RunTaskCommand.Gated"/>: <see cref="TaskCommandBatcher"/> ran FluentValidation and the plugin gate on
/// the submitter's flow, with its cancellation, before queueing it), so no plugin call runs here and a slow one holds
/// up no other command. Each is decided by <see cref="TaskCommandHandler.DecideAsync"/> on its task as fetched for
/// writing in one batched query (a create, whose id the API has just made, starts its stream without that read). The
/// events (each stream stamped with its own command's metadata, the plugin decisions among its headers) and the
/// cascaded start and stop messages commit together through Wolverine's transactional middleware; a lost race on any
/// stream fails the batch with Marten's concurrency error, and the conflict policy decides the whole batch again. A
/// command whose task is no longer the one its plugins authorized (another command committed on it since the gate read
/// it) is not decided: its outcome has no result and the batcher gates it again.
/// </summary>
public static class RunTaskCommandsHandler
{
    public static async Task<(TaskCommandOutcomes, OutgoingMessages)> HandleAsync(
        RunTaskCommands message, IDocumentSession session, CommandSessionServices services, StopMessages stops, WolverinePlacement placement,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(services);
        var commands = message.Commands;
        var gated = new GatedCommand[commands.Count];
        var outcomes = new TaskCommandOutcome[commands.Count];
        for (var i = 0; i < commands.Count; i++)
        {
            gated[i] = commands[i].Gated ?? throw new InvalidOperationException($"task {commands[i].TaskId}'s command reached a batch without going through the gate");
        }

        var existing = Enumerable.Range(0, commands.Count).Where(i => gated[i].Command is not CreateTask).ToList();
        var fetched = await WolverineStreams.FetchForWritingAsync<TaskState>(session, existing.Select(i => commands[i].TaskId.Value), cancellationToken);
        var streams = new IEventStream<TaskState>?[commands.Count];
        for (var j = 0; j < existing.Count; j++)
        {
            streams[existing[j]] = fetched[j];
        }

        var outgoing = new OutgoingMessages();
        CommandSessionListener? listener = null;
        for (var i = 0; i < commands.Count; i++)
        {
            var command = gated[i];
            var stream = streams[i];
            if (PluginGateMiddleware.IsStale(command, stream?.Aggregate))
            {
                outcomes[i] = new TaskCommandOutcome(null, command);
                continue;
            }

            var result = await TaskCommandHandler.DecideAsync(
                commands[i], command, stream?.Aggregate, stream?.CurrentVersion ?? 0, session, stops, placement, outgoing, cancellationToken);
            if (result.Appended.Count > 0)
            {
                listener ??= services.Attach(session, command.Metadata);
                var streamId = TaskAggregate.StreamId(commands[i].TaskId);
                _ = stream is null
                    ? listener.Start<TaskState>(session, commands[i].TaskId.Value, streamId, result.Appended, result.State, command.Metadata)
                    : listener.Append(stream, streamId, result.Appended, result.State, command.Metadata);
            }

            outcomes[i] = new TaskCommandOutcome(result, command);
        }

        return (new TaskCommandOutcomes(outcomes), outgoing);
    }
}

/// <summary>
/// Group commit for the API's task commands (ADR 0016): a request's command is validated and gated by the plugins on
/// the request's own flow and cancellation (a slow plugin holds up only that request; a client that goes away cancels
/// its plugin call), then waits in a queue; up to
/// <c>MANAGER_COMMAND_BATCHES</c> loops each take every command waiting (at most <see cref="MaxBatch"/>) and run them
/// as one <see cref="RunTaskCommands"/>, so the commands that arrive while a batch commits share the next transaction.
/// Two commands for one task go in successive rounds (each decides on the state the one before left). When a batch
/// fails for a reason its retries did not cure, each of its commands runs again alone through the single command's
/// handler, so one bad command costs only itself (with the gate outcome it was queued with: the plugins are not asked
/// again). The plugin notifications (on_task_start) follow each commit. Each
/// round's size and duration are in /metrics (<c>manager_command_batch_size</c>,
/// <c>manager_command_batch_duration_seconds</c>): how many commands share a transaction and how long they wait for it.
/// </summary>
public sealed partial class TaskCommandBatcher(
    IWolverineRuntime runtime, TaskPlugins plugins, IValidator<RunTaskCommand> validator, ITaskQueries queries, int batches, ILogger<TaskCommandBatcher> logger)
    : BackgroundService
{
    /// <summary>The most commands one batch takes.</summary>
    public const int MaxBatch = 64;

    /// <summary>
    /// How many times a command is gated, at most, while its task keeps changing between the gate and the decision
    /// (each time another command on the task committed, so the task's commands as a whole make progress); then it is
    /// refused (<see cref="GateRaceException"/>, 409).
    /// </summary>
    public const int MaxGates = 16;

    /// <summary>Passes through the thread pool's queue a loop makes before it takes its batch (see LoopAsync).</summary>
    private const int YieldPasses = 10;

    /// <summary>How long a loop lets queued work add commands before it takes its batch (see LoopAsync).</summary>
    private static readonly TimeSpan YieldBudget = TimeSpan.FromMilliseconds(1);

    private static readonly Histogram<int> BatchSize = ManagerMeter.Meter.CreateHistogram<int>(
        "manager_command_batch_size", "{command}", "Task commands (API commands and proplet results) decided and committed together in one batch");

    private static readonly Histogram<double> QueueWait = ManagerMeter.Meter.CreateHistogram<double>(
        "manager_command_queue_seconds", "s", "Time a task command waited, from its gated request or broker message, until a batch loop took it");

    private static readonly Counter<long> Regated = ManagerMeter.Meter.CreateCounter<long>(
        "manager_command_regated_total", "{command}", "Task commands gated again because their task changed after the plugins authorized them");

    private static readonly Histogram<double> BatchDuration = ManagerMeter.Meter.CreateHistogram<double>(
        "manager_command_batch_duration_seconds", "s", "Time from a batch's start to its commands' answers (decide, commit, notifications)");

    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = false });

    /// <summary>Whether commands are batched (MANAGER_COMMAND_BATCHES &gt; 0); otherwise each is invoked alone.</summary>
    public bool Enabled => batches > 0;

    /// <summary>
    /// Validates and gates <paramref name="command"/> here, on the caller's flow and with its
    /// <paramref name="cancellationToken"/> (the request's, or the broker message's), then decides it in the next batch;
    /// its result once committed, or the refusal (<see cref="ValidationException"/>, <see cref="PluginDeniedException"/>,
    /// <see cref="GateRaceException"/>) or failure thrown. When its task changed after the plugins authorized it (another
    /// command on the task committed in between), it is gated again on the task as it now stands, up to
    /// <see cref="MaxGates"/> times.
    /// </summary>
    public async Task<CommandResult<TaskEvent, TaskState>> InvokeAsync(RunTaskCommand command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        for (var gates = 1; ; gates++)
        {
            if (await DecideOnceAsync(command, cancellationToken) is { } result)
            {
                return result;
            }

            Regated.Add(1);
            if (gates == MaxGates)
            {
                throw new GateRaceException(command.TaskId, gates);
            }
        }
    }

    /// <summary>The command gated and decided once: its result, or null when its task changed after the gate.</summary>
    private async Task<CommandResult<TaskEvent, TaskState>?> DecideOnceAsync(RunTaskCommand command, CancellationToken cancellationToken)
    {
        var bus = new MessageBus(runtime);
        if (!Enabled)
        {
            // The single command's handler chain validates and gates it, on this flow too.
            try
            {
                return await bus.InvokeAsync<CommandResult<TaskEvent, TaskState>>(command, cancellationToken);
            }
            catch (StaleGateException)
            {
                return null;
            }
        }

        // The plugin calls run before the queue, not in the batch: a batch decides and commits commands already gated,
        // so an authorize that runs to its time limit holds up its own request, never the commands and results queued
        // beside it.
        var pending = new Pending(await GateAsync(command, cancellationToken), new TaskCompletionSource<CommandResult<TaskEvent, TaskState>?>(TaskCreationOptions.RunContinuationsAsynchronously), Stopwatch.GetTimestamp());
        if (!_queue.Writer.TryWrite(pending))
        {
            await RunAloneAsync(bus, pending, cancellationToken);
        }

        // The command commits whether or not its request is still waiting (as a single InvokeAsync would).
        return await pending.Done.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Gates <paramref name="commands"/> and runs those the gate let through as one batch now, outside the queue (tests:
    /// what a batch that arrived together does); a refused command's task holds its refusal.
    /// </summary>
    internal async Task<Task<CommandResult<TaskEvent, TaskState>>[]> RunTogetherAsync(IReadOnlyList<RunTaskCommand> commands, CancellationToken cancellationToken)
    {
        var answers = new Task<CommandResult<TaskEvent, TaskState>>[commands.Count];
        var pending = new List<Pending>(commands.Count);
        for (var i = 0; i < commands.Count; i++)
        {
            try
            {
                var queued = new Pending(await GateAsync(commands[i], cancellationToken), new TaskCompletionSource<CommandResult<TaskEvent, TaskState>?>(TaskCreationOptions.RunContinuationsAsynchronously), Stopwatch.GetTimestamp());
                pending.Add(queued);
                answers[i] = DecidedAsync(queued.Done.Task, commands[i].TaskId);
            }
            catch (Exception ex) when (ex is ValidationException or PluginDeniedException)
            {
                answers[i] = Task.FromException<CommandResult<TaskEvent, TaskState>>(ex);
            }
        }

        foreach (var round in TaskRounds.Split(pending, p => p.Command.TaskId))
        {
            await RunAsync(round, cancellationToken);
        }

        return answers;

        static async Task<CommandResult<TaskEvent, TaskState>> DecidedAsync(Task<CommandResult<TaskEvent, TaskState>?> done, TaskId id) =>
            await done ?? throw new StaleGateException(id);
    }

    /// <summary>
    /// What the single command's handler chain does before deciding (FluentValidation, then the plugin gate), here on
    /// the caller's flow: the command with its <see cref="RunTaskCommand.Gated"/> outcome, or the refusal thrown.
    /// </summary>
    private async Task<RunTaskCommand> GateAsync(RunTaskCommand command, CancellationToken cancellationToken)
    {
        FluentValidationMiddleware.Validate(command, validator);
        return command with { Gated = await PluginGateMiddleware.BeforeAsync(command, plugins, queries, cancellationToken) };
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Enabled ? Task.WhenAll(Enumerable.Range(0, batches).Select(_ => LoopAsync(stoppingToken))) : Task.CompletedTask;

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
        while (_queue.Reader.TryRead(out var left))
        {
            left.Done.TrySetCanceled(CancellationToken.None);
        }
    }

    private async Task LoopAsync(CancellationToken stoppingToken)
    {
        var batch = new List<Pending>(MaxBatch);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken))
            {
                // Up to ten passes through the thread pool's queue (at most 1 ms) before taking the batch: the requests
                // and broker messages already queued there add their commands first. Under load the batches grow (5.5
                // commands instead of 4.4 at 16 clients, 1.1 commits per task instead of 1.3); a lone command waits
                // only for the idle pool to run the loop ten times (ADR 0016 decision 8).
                var yielding = Stopwatch.GetTimestamp();
                for (var pass = 0; pass < YieldPasses && Stopwatch.GetElapsedTime(yielding) < YieldBudget; pass++)
                {
                    await Task.Yield();
                }

                batch.Clear();
                while (batch.Count < MaxBatch && _queue.Reader.TryRead(out var pending))
                {
                    batch.Add(pending);
                    QueueWait.Record(Stopwatch.GetElapsedTime(pending.QueuedAt).TotalSeconds);
                }

                foreach (var round in TaskRounds.Split(batch, p => p.Command.TaskId))
                {
                    var started = Stopwatch.GetTimestamp();
                    try
                    {
                        await RunAsync(round, stoppingToken);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                    {
                        // Whatever went wrong, the loop goes on and the requests get their answer (a 500), never a hang.
                        LogRoundFailed(logger, round.Count, ex);
                        foreach (var pending in round)
                        {
                            pending.Done.TrySetException(ex);
                        }
                    }

                    BatchSize.Record(round.Count);
                    BatchDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            foreach (var pending in batch)
            {
                pending.Done.TrySetCanceled(stoppingToken);
            }
        }
    }

    private async Task RunAsync(List<Pending> round, CancellationToken stoppingToken)
    {
        var bus = new MessageBus(runtime);
        TaskCommandOutcomes outcomes;
        try
        {
            outcomes = await bus.InvokeAsync<TaskCommandOutcomes>(new RunTaskCommands([.. round.Select(p => p.Command)]), stoppingToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            if (round.Count == 1)
            {
                round[0].Done.TrySetException(ex);
                return;
            }

            LogBatchFailed(logger, round.Count, ex);
            await Task.WhenAll(round.Select(p => RunAloneAsync(bus, p, stoppingToken)));
            return;
        }

        for (var i = 0; i < round.Count; i++)
        {
            var outcome = outcomes.Outcomes[i];
            if (outcome.Result is null)
            {
                round[i].Done.TrySetResult(null);
                continue;
            }

            try
            {
                PluginGateMiddleware.AfterCommit(outcome.Gated, outcome.Result, plugins);
            }
            catch (Exception ex)
            {
                // The command is committed: its answer stands whatever a notification did.
                LogNotificationFailed(logger, round[i].Command.TaskId.ToString(), ex);
            }

            round[i].Done.TrySetResult(outcome.Result);
        }
    }

    /// <summary>
    /// One command of a failed batch through the single command's handler; it carries its gate outcome
    /// (<see cref="RunTaskCommand.Gated"/>), which the handler's gate middleware keeps: the plugins are not asked again
    /// (unless its task changed since they were: no result, and it is gated again).
    /// </summary>
    private static async Task RunAloneAsync(MessageBus bus, Pending pending, CancellationToken stoppingToken)
    {
        try
        {
            pending.Done.TrySetResult(await bus.InvokeAsync<CommandResult<TaskEvent, TaskState>>(pending.Command, stoppingToken));
        }
        catch (StaleGateException)
        {
            pending.Done.TrySetResult(null);
        }
        catch (Exception ex)
        {
            pending.Done.TrySetException(ex);
        }
    }

    [LoggerMessage(EventId = 6201, Level = LogLevel.Warning, Message = "A batch of {Count} task commands failed; each runs again alone")]
    private static partial void LogBatchFailed(ILogger logger, int count, Exception exception);

    [LoggerMessage(EventId = 6202, Level = LogLevel.Error, Message = "A round of {Count} task commands failed unexpectedly; their requests get the error")]
    private static partial void LogRoundFailed(ILogger logger, int count, Exception exception);

    [LoggerMessage(EventId = 6203, Level = LogLevel.Warning, Message = "The plugin notification after task {TaskId}'s committed command failed")]
    private static partial void LogNotificationFailed(ILogger logger, string taskId, Exception exception);

    private sealed record Pending(RunTaskCommand Command, TaskCompletionSource<CommandResult<TaskEvent, TaskState>?> Done, long QueuedAt);
}

/// <summary>Commands for several tasks split into rounds that each hold at most one command per task, in order.</summary>
internal static class TaskRounds
{
    /// <summary>
    /// The first command for each task goes in round 0, a second in round 1, and so on: each round can be decided in one
    /// transaction, and a task's later command decides on the state its earlier one left.
    /// </summary>
    public static List<List<T>> Split<T>(IEnumerable<T> items, Func<T, TaskId> task)
    {
        var rounds = new List<List<T>>();
        var seen = new Dictionary<TaskId, int>();
        foreach (var item in items)
        {
            var key = task(item);
            var round = seen[key] = seen.TryGetValue(key, out var last) ? last + 1 : 0;
            if (round == rounds.Count)
            {
                rounds.Add([]);
            }

            rounds[round].Add(item);
        }

        return rounds;
    }
}
