using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Propeller.Broker;
using Propeller.Contracts.Json;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Fetching;
using Propeller.Edge.Messaging;
using Propeller.Edge.Monitoring;
using Propeller.Plugins.Proplet;
using Propeller.WasmHost;

namespace Propeller.Edge.Tasks;

/// <summary>
/// The proplet's task pipeline (spec §2.1): decode and validate a start (an invalid one gets an error result),
/// drop starts for other proplets, ignore duplicates while the id is running (a later attempt stops the running one and
/// follows it), fetch the binary, run it in a
/// concurrency slot under its limits, publish the result; stops end the task for real. Daemons publish an empty
/// success at once (like the original) but stay registered, so a stop still ends them and a second start is a
/// duplicate. Nothing here throws out to the MQTT loop: every failure becomes a log line or an error result.
/// </summary>
public sealed class TaskRunner : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, RunningTask> _running = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, LatentTask> _latent = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Task, byte> _executions = new();

    /// <summary>Starts not yet admitted (with the plugins, or waiting for a stopped run to unwind): a stop meanwhile cancels
    /// them, a start of a later dispatch of their attempt makes them that dispatch.</summary>
    private readonly ConcurrentDictionary<string, Admission> _admitting = new(StringComparer.Ordinal);
    private readonly AttemptMemory _stoppedAttempts = new(TimeProvider.System);

    /// <summary>The runs (attempt and dispatch) that finished here: a start of one of them again is not run (a QoS 1
    /// start delivered twice, one the manager sent again after this proplet's report of what it holds, taken before
    /// the first copy arrived). More ids than the stops' memory: every task run leaves one.</summary>
    private readonly AttemptMemory _finishedRuns = new(TimeProvider.System, capacity: 16384);
    private readonly FinishedResults _finishedResults = new(TimeProvider.System);
    private readonly Lock _admissionGate = new();
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _fetches; // remote fetches at once (FetchForSlotAsync): as many as slots
    private long _waitingBytes; // what the starts waiting for a slot hold of modules (WaitForSlotAsync)
    private readonly PropletSettings _settings;
    private readonly IWasmRuntime _runtime;
    private readonly BinaryFetcher _fetcher;
    private readonly IPropletPublisher _publisher;
    private readonly TaskMonitor? _monitor;
    private readonly ILogger<TaskRunner> _logger;
    private readonly TaskLimits _defaults;
    private readonly PropletPluginChain? _plugins;
    private readonly CancellationTokenSource _lifetime = new();

    // Result publishes: cancelled only once shutdown's drain budget is spent (DisposeAsync), not with _lifetime, so a
    // finished task's result waiting for its ack or its turn still goes out (dropped, the manager ran the task again).
    private readonly CancellationTokenSource _publishing = new();
    private long _started;
    private long _completed;
    private long _failed;
    private long _invalid;
    private int _closing;

    public TaskRunner(
        PropletSettings settings, IWasmRuntime runtime, BinaryFetcher fetcher, IPropletPublisher publisher, TaskMonitor? monitor, ILogger<TaskRunner> logger,
        PropletPluginChain? plugins = null)
    {
        _plugins = plugins;
        ArgumentNullException.ThrowIfNull(settings);
        _settings = settings;
        _runtime = runtime;
        _fetcher = fetcher;
        _publisher = publisher;
        _monitor = monitor;
        _logger = logger;
        _defaults = TaskLimits.Defaults(settings);
        _slots = new SemaphoreSlim(settings.MaxConcurrentTasks, settings.MaxConcurrentTasks);
        _fetches = new SemaphoreSlim(settings.MaxConcurrentTasks, settings.MaxConcurrentTasks);
    }

    public int RunningCount => _running.Count;

    /// <summary>What the starts waiting for a slot hold of modules now, in bytes (PROPLET_MAX_WAITING_BYTES).</summary>
    internal long WaitingBytes => Interlocked.Read(ref _waitingBytes);

    /// <summary>
    /// The tasks this proplet holds now: being admitted, waiting for a slot, running, serving, deployed latent. Reported
    /// to the manager with every discovery, so that it can send again a start the broker dropped and a stop that was
    /// lost (docs/edge.md "What a proplet holds").
    /// </summary>
    public IReadOnlyList<HeldTask> Held()
    {
        // An id may be in two places (a start admitted after a stopped run of it unwinds): the later attempt is the one
        // held, and of one attempt the later dispatch (the manager sends the start again for a report of an earlier one).
        var held = new Dictionary<string, HeldTask>(StringComparer.Ordinal);
        void Hold(string id, int? attempt, int? dispatch)
        {
            if (!held.TryGetValue(id, out var other) || !(other.Attempt > attempt || (other.Attempt == attempt && other.Dispatch > dispatch)))
            {
                held[id] = new HeldTask(id, attempt, dispatch);
            }
        }

        foreach (var (id, admission) in _admitting)
        {
            Hold(id, admission.Attempt, admission.Dispatch);
        }

        foreach (var (id, task) in _running)
        {
            Hold(id, task.Request.Attempt, task.Dispatch);
        }

        foreach (var (id, latent) in _latent)
        {
            Hold(id, latent.Request.Attempt, latent.Deployment.Dispatch);
        }

        return [.. held.Values];
    }

    /// <summary>Whether latent task <paramref name="id"/> is precompiled and waits for invocations.</summary>
    internal bool IsDeployed(string id) => _latent.ContainsKey(id);

    public long Started => Interlocked.Read(ref _started);

    public long Completed => Interlocked.Read(ref _completed);

    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Start commands dropped as malformed (their JSON, or a required field).</summary>
    public long InvalidStarts => Interlocked.Read(ref _invalid);

    /// <summary>Handles a start command; returns at once (execution continues in the background).</summary>
    public void HandleStart(ReadOnlyMemory<byte> payload)
    {
        var parse = StartRequestParser.Parse(payload.Span, _settings.EntityId, _defaults);
        if (parse.IsForOtherProplet)
        {
            return;
        }

        if (Volatile.Read(ref _closing) == 1)
        {
            EdgeLog.StartDuringShutdown(_logger, parse.Id ?? "(none)");
            return;
        }

        if (parse.Request is not { } request)
        {
            // Answered as a run of the attempt and dispatch it named, as a valid start's result is: one naming none applies
            // to the manager's current attempt (a stale invalid start failed a newer one), and it is remembered as finished,
            // so a start of it delivered again gets that result again, not a fresh one.
            var badRun = parse.Attempt is { } badAttempt && parse.Dispatch is { } badDispatch ? new Run(badAttempt, badDispatch) : (Run?)null;
            if (parse.Id is { } finishedId && badRun is { } finishedRun && AnsweredAsFinished(finishedId, finishedRun))
            {
                return;
            }

            Interlocked.Increment(ref _invalid);
            EdgeLog.InvalidStart(_logger, parse.Id ?? "(none)", parse.Error!);
            if (parse.Id is { } badId)
            {
                RecordFinished(badId, badRun);
                Track(PublishResultAsync(badId, TaskOutcome.Failure(parse.Error!), parse.Attempt, parse.Dispatch));
            }

            return;
        }

        // Features of the original this proplet does not have are refused with an error result, not silence.
        var unsupported = request.Message switch
        {
            { Encrypted: true } => "TEE runtime not available",
            _ => null,
        };
        if (unsupported is not null)
        {
            Track(PublishResultAsync(request.Id, TaskOutcome.Failure(unsupported), request.Attempt, request.Message.Dispatch));
            return;
        }

        if (request.Attempt is { } attempt && _stoppedAttempts.Covers(request.Id, request.Run ?? new Run(attempt, 0)))
        {
            // A start that arrives after the stop of its attempt (a retried, recovered or replayed publish): the manager
            // has recorded the stop, so it is not run; it gets the stopped result it would have had if the stop had
            // caught it being admitted (the manager records it as ignored, a trace of the late start in the history).
            EdgeLog.StartAfterItsStop(_logger, request.Id, attempt);
            Track(PublishResultAsync(request.Id, TaskOutcome.Failure($"Task {request.Id} was stopped before completion"), attempt, request.Message.Dispatch));
            return;
        }

        if (request.Run is { } run && AnsweredAsFinished(request.Id, run))
        {
            return;
        }

        if (request.Attempt is { } current && !SupersedeEarlierAttempts(request.Id, current))
        {
            return;
        }

        if (_plugins is { Any: true } plugins)
        {
            if (_running.TryGetValue(request.Id, out var running) && JoinsRun(request, running))
            {
                // Not a new task: the plugins decided on it when it was admitted. Put to them again, a deny of this copy
                // failed the live run (its error result accepted by the manager, the run recorded as finished).
                return;
            }

            if (NewAdmission(request) is { } admission)
            {
                Track(AdmitWithPluginsAsync(request, plugins, admission));
            }

            return;
        }

        Admit(request);
    }

    /// <summary>True, and the start answered, when <paramref name="run"/> of task <paramref name="id"/> (or a later one)
    /// finished here.</summary>
    private bool AnsweredAsFinished(string id, Run run)
    {
        if (!_finishedRuns.Covers(id, run))
        {
            return false;
        }

        // Not run twice. The manager sends a start again only while it has the task running here and this proplet's
        // report lacked it: the run's result was lost on the way, so it goes again (the manager ignores a copy it has).
        if (_finishedResults.Find(id, run.Attempt) is { } result)
        {
            EdgeLog.ResultOfFinishedRunSentAgain(_logger, id, run.Attempt, run.Dispatch);
            Track(PublishResultPayloadAsync(id, result));
        }
        else
        {
            EdgeLog.StartOfFinishedRun(_logger, id, run.Attempt, run.Dispatch);
        }

        return true;
    }

    /// <summary>
    /// A start of <paramref name="attempt"/> while another attempt of its id runs, is deployed or is being admitted here:
    /// false (logged, dropped) when that one is later (a stale start: the manager has moved on). An earlier one is
    /// stopped as its stop would have (its stopped result, the attempt remembered as stopped): the manager starts a new
    /// attempt only after the earlier one ended for it, so the stop of that one was lost or is late, and without this the
    /// new start was dropped as a duplicate, never run and never answered. The start then waits for the stopped run to
    /// let go of the id (<see cref="Admit"/>). The same attempt, or none on either side, stays a duplicate (a QoS 2
    /// redelivery, the original manager).
    /// </summary>
    private bool SupersedeEarlierAttempts(string id, int attempt)
    {
        int? admitting = _admitting.TryGetValue(id, out var admission) ? admission.Attempt : null;
        var running = _running.TryGetValue(id, out var task) ? task : null;
        if (IsNewer(admitting, attempt) || IsNewer(running?.Request.Attempt, attempt))
        {
            EdgeLog.StaleStart(_logger, id, attempt);
            return false;
        }

        if (IsNewer(attempt, admitting) || (running is { Reason: StopReason.None } && IsNewer(attempt, running.Request.Attempt)))
        {
            EdgeLog.EarlierAttemptSuperseded(_logger, id, attempt);
            _stoppedAttempts.Record(id, attempt - 1);
            StopTask(id, (started, _) => !IsNewer(attempt, started), out _);
        }

        return true;
    }

    private void Admit(StartRequest request)
    {
        var task = new RunningTask(request);
        while (!_running.TryAdd(request.Id, task))
        {
            if (!_running.TryGetValue(request.Id, out var earlier))
            {
                continue; // it ended meanwhile
            }

            task.Dispose();
            if (JoinsRun(request, earlier))
            {
                return;
            }

            // Stopped and still unwinding (its grace period, an external process exiting): the start that follows a
            // stop runs once that run has let go of the id (spec §2.8 forgets a stopped task at once), not dropped.
            // It waits as an admission, so a stop meanwhile cancels it.
            if (NewAdmission(request) is { } parked)
            {
                Track(AdmitAfterAsync(earlier, request, parked));
            }

            return;
        }

        if (Volatile.Read(ref _closing) == 1)
        {
            // Shutting down began after the check in HandleStart: not run (nothing would wait for it).
            _running.TryRemove(new KeyValuePair<string, RunningTask>(request.Id, task));
            task.Dispose();
            EdgeLog.StartDuringShutdown(_logger, request.Id);
            return;
        }

        Interlocked.Increment(ref _started);
        EdgeLog.TaskAccepted(_logger, request.Id, request.Name);
        Track(request.Message.Latent ? DeployLatentAsync(task) : ExecuteAsync(task));
    }

    /// <summary>True, and <paramref name="request"/> handled as a start of the run <paramref name="earlier"/> (<see
    /// cref="JoinRun"/>), unless that run was stopped and unwinds: then the start is a new one, admitted once the run lets
    /// go of the id. With the plugins, before they are asked: a start of a run held here is no new task to authorize.</summary>
    private bool JoinsRun(StartRequest request, RunningTask earlier)
    {
        if (earlier.Reason is StopReason.Stopped or StopReason.TimedOut)
        {
            return false;
        }

        JoinRun(request, earlier);
        return true;
    }

    /// <summary>A start of the id of <paramref name="earlier"/>, which runs (or is deployed) here and was not stopped: a
    /// later dispatch of its attempt is adopted by the run, anything else is a duplicate (logged, dropped).</summary>
    private void JoinRun(StartRequest request, RunningTask earlier)
    {
        if (request.Run is { } later && later.IsLaterDispatchOf(earlier.Run))
        {
            // Dispatched back here while it runs (the proplet was taken for gone, the task re-dispatched): this run
            // is the later dispatch from now on. The manager, which found the run held here while the task waited,
            // may have sent a stop of the earlier dispatch just before: arriving after this start, it spares the run
            // (before, it stopped the run the task was now waiting for, which failed or left it serving nothing).
            earlier.Adopt(later.Dispatch);
            EdgeLog.RunAdoptsDispatch(_logger, request.Id, later.Attempt, later.Dispatch);
            if (earlier.Serving && _finishedResults.Find(request.Id, later.Attempt) is { } started)
            {
                // A daemon or served proxy: its "started" result went out before and was ignored (the task was
                // waiting for a proplet then), and the task now waits for one: it gets that result again.
                // Sent as the later dispatch's now (the manager ignores a result of the earlier one).
                EdgeLog.ServingStartedSentAgain(_logger, request.Id, later.Attempt);
                Track(PublishResultPayloadAsync(request.Id, OfDispatch(request.Id, later, started)));
                return;
            }
        }

        EdgeLog.DuplicateStart(_logger, request.Id);
    }

    /// <summary>Registers <paramref name="request"/> as being admitted (a stop cancels it); null, logged, when a start of
    /// its id is being admitted already: a duplicate, or a later dispatch of its attempt, which that admission becomes (as
    /// a run does, <see cref="Admit"/>; before, it was dropped as a duplicate, the run went out as the earlier dispatch, and
    /// the manager ignored its result).</summary>
    private Admission? NewAdmission(StartRequest request)
    {
        var admission = new Admission(request, _lifetime.Token);
        while (!_admitting.TryAdd(request.Id, admission))
        {
            lock (_admissionGate)
            {
                // With the admission's end (EndAdmissionAsync) and a stop (StopTask): the earlier admission is found here
                // and adopts the dispatch before it is admitted, or it has ended and this start goes on as a new one.
                if (!_admitting.TryGetValue(request.Id, out var earlier))
                {
                    continue;
                }

                admission.Dispose();
                if (request.Run is { } later && later.IsLaterDispatchOf(earlier.Run))
                {
                    earlier.Adopt(later.Dispatch);
                    EdgeLog.RunAdoptsDispatch(_logger, request.Id, later.Attempt, later.Dispatch);
                }
                else
                {
                    EdgeLog.DuplicateStart(_logger, request.Id);
                }

                return null;
            }
        }

        return admission;
    }

    private async Task AdmitAfterAsync(RunningTask earlier, StartRequest request, Admission admission)
    {
        try
        {
            await earlier.Ended.WaitAsync(admission.Cancellation.Token);
        }
        catch (OperationCanceledException) when (admission.Cancellation.IsCancellationRequested)
        {
            // stopped, or shutting down: below
        }

        await EndAdmissionAsync(request, admission, refusal: null);
    }

    /// <summary>
    /// The proplet plugins (spec propeller-edge.md §5): <c>authorize</c> first (a deny, or a plugin failure, sends an
    /// error result), then <c>enrich</c>, whose environment goes over the request's. They run off the MQTT handler (a
    /// slow plugin holds up no other message), and a stop that arrives meanwhile cancels them: the task is not run and
    /// gets the stopped result. Any other failure here is logged and gets an error result too.
    /// </summary>
    private async Task AdmitWithPluginsAsync(StartRequest request, PropletPluginChain plugins, Admission admission)
    {
        await Task.Yield();
        var id = request.Id;
        TaskOutcome? refusal = null;
        try
        {
            var info = InfoOf(request);
            var (allowed, reason) = await plugins.AuthorizeAsync(info, admission.Cancellation.Token);
            if (!allowed)
            {
                var why = reason is { Length: > 0 } ? reason : "denied by plugin";
                EdgeLog.PluginDenied(_logger, id, why);
                refusal = TaskOutcome.Failure(why);
            }
            else
            {
                var extra = await plugins.EnrichAsync(info, admission.Cancellation.Token);
                if (extra.Count > 0)
                {
                    var env = new Dictionary<string, string>(request.Env, StringComparer.Ordinal);
                    foreach (var (key, value) in extra)
                    {
                        env[key] = value;
                    }

                    request = request with { Message = request.Message with { Env = env } };
                }
            }
        }
        catch (OperationCanceledException) when (admission.Cancellation.IsCancellationRequested)
        {
            // stopped, or shutting down: below
        }
        catch (Exception ex)
        {
            // Out of memory too, as ExecuteAsync: the start is refused and its admission lets go of the id.
            EdgeLog.AdmissionFailed(_logger, id, ex);
            refusal = TaskOutcome.Failure($"internal proplet error: {ex.Message}");
        }

        await EndAdmissionAsync(request, admission, refusal);
    }

    /// <summary>Runs an admitted start unless it was stopped meanwhile (then the stopped result), refused (then the
    /// refusal) or its run finished meanwhile (then nothing: that run's result), and lets its admission go. It goes on as the dispatch the admission is by then.</summary>
    private async Task EndAdmissionAsync(StartRequest request, Admission admission, TaskOutcome? refusal)
    {
        var id = request.Id;
        bool stopped;
        lock (_admissionGate)
        {
            // With the stop's side of this lock (StopAdmittingAndRunning): a stop finds the start either here, and cancels it, or
            // already running. And with a start of a later dispatch (NewAdmission): it raised the admission's dispatch, or
            // it finds the run.
            _admitting.TryRemove(KeyValuePair.Create(id, admission));
            request = admission.Admitted(request);
            stopped = admission.Cancellation.IsCancellationRequested;
            if (!stopped && refusal is null)
            {
                if (request.Run is { } run && _finishedRuns.Covers(id, run))
                {
                    // That run finished while this start waited (a QoS 1/2 start delivered again while the run timed out
                    // and unwound, or was with the plugins): it is recorded before it lets go of the id, so it is seen
                    // here. Its own result is on its way; admitted, the task ran a second time and sent a second result.
                    EdgeLog.StartOfFinishedRun(_logger, id, run.Attempt, run.Dispatch);
                }
                else
                {
                    Admit(request);
                }
            }
        }

        admission.Dispose();
        if (stopped && _lifetime.IsCancellationRequested)
        {
            EdgeLog.ResultDropped(_logger, id);
        }
        else if (stopped)
        {
            await PublishResultAsync(id, TaskOutcome.Failure($"Task {id} was stopped before completion"), request.Attempt, request.Message.Dispatch);
        }
        else if (refusal is not null)
        {
            RecordFinished(id, request.Run);
            await PublishResultAsync(id, refusal, request.Attempt, request.Message.Dispatch);
        }
    }

    /// <summary>Stops the deployment of latent task <paramref name="id"/>, or its run and a start of it still being
    /// admitted; false when there is none. What <paramref name="spares"/> says of its attempt and dispatch is left alone
    /// (<paramref name="spared"/>).</summary>
    private bool StopTask(string id, Func<int?, int?, bool> spares, out bool spared)
    {
        lock (_admissionGate)
        {
            // With the deployment's side of this lock (DeployLatentAsync): deployed, or aborted while compiling.
            if (_latent.TryGetValue(id, out var latent) && spares(latent.Request.Attempt, latent.Deployment.Dispatch))
            {
                spared = true;
                return false;
            }

            if (latent is not null && _latent.TryRemove(new KeyValuePair<string, LatentTask>(id, latent)))
            {
                // A deployed latent task has nothing running of its own: forget it and end its invocations (spec §2.8).
                spared = false;
                EdgeLog.Stopping(_logger, id);
                latent.Deployment.Abort(StopReason.Stopped);
                foreach (var invocation in latent.Invocations.Keys)
                {
                    invocation.Abort(StopReason.Stopped);
                }

                _running.TryRemove(new KeyValuePair<string, RunningTask>(id, latent.Deployment));
                latent.Deployment.Dispose(); // ends it: a start of the same id waiting for it to let go runs now
                EdgeLog.LatentStopped(_logger, id);
                return true;
            }

            // stopped running, with the plugins, waiting for its stopped run to unwind, or in the moment it was admitted
            return StopAdmittingAndRunning(id, spares, out spared);
        }
    }

    /// <summary>Stops the run of <paramref name="id"/> and a start of it still being admitted (with the plugins, or
    /// waiting for a stopped run to unwind; admitted in the meantime: then running); false when there is neither. What
    /// <paramref name="spares"/> says of its attempt is left alone (<paramref name="spared"/>). Called by
    /// <see cref="StopTask"/>, under the admission lock.</summary>
    private bool StopAdmittingAndRunning(string id, Func<int?, int?, bool> spares, out bool spared)
    {
        var found = false;
        spared = false;
        if (_admitting.TryGetValue(id, out var admission))
        {
            if (spares(admission.Attempt, admission.Dispatch))
            {
                spared = true;
            }
            else if (_admitting.TryRemove(KeyValuePair.Create(id, admission)))
            {
                admission.Cancellation.Cancel();
                found = true;
            }
        }

        if (_running.TryGetValue(id, out var task))
        {
            if (spares(task.Request.Attempt, task.Dispatch))
            {
                spared = true;
            }
            else
            {
                task.Abort(StopReason.Stopped);
                found = true;
            }
        }

        if (found)
        {
            EdgeLog.Stopping(_logger, id);
        }

        return found;
    }

    /// <summary>Whether a start of <paramref name="started"/> is later than the attempt a stop named; unknown when
    /// either has none (the original manager's messages), which stops it as before.</summary>
    private static bool IsNewer(int? started, int? stopped) => started is { } s && stopped is { } t && s > t;

    /// <summary>Whether a run of <paramref name="started"/> (attempt) and <paramref name="startedDispatch"/> is later than the
    /// one a stop named: a later attempt, or a later dispatch of the same attempt when both name theirs.</summary>
    private static bool IsNewerRun(int? started, int? startedDispatch, int? stopped, int? stoppedDispatch) =>
        IsNewer(started, stopped) || (started is { } s && s == stopped && IsNewer(startedDispatch, stoppedDispatch));

    private static PropletTaskInfo InfoOf(StartRequest request) => new()
    {
        Id = request.Id,
        Name = request.Name,
        ImageUrl = request.Message.ImageUrl ?? "",
        CliArgs = request.CliArgs,
        Env = request.Env,
        Daemon = request.Message.Daemon,
        Encrypted = request.Message.Encrypted,
    };

    /// <summary>Handles a stop command: ends the task if it runs here; an unknown id is normal (stops go to every proplet).</summary>
    public void HandleStop(ReadOnlyMemory<byte> payload)
    {
        string? id;
        int? attempt;
        int? dispatch;
        try
        {
            using var document = JsonDocument.Parse(payload);
            var root = document.RootElement;
            id = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("id", out var value) && value.ValueKind == JsonValueKind.String
                ? value.GetString()
                : null;
            int? Number(string name) => root.ValueKind == JsonValueKind.Object && root.TryGetProperty(name, out var number)
                                        && number.ValueKind == JsonValueKind.Number && number.TryGetInt32(out var n)
                ? n
                : null;
            attempt = Number("attempt");
            dispatch = attempt is null ? null : Number("dispatch");
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a string that is not valid UTF-8.
            EdgeLog.InvalidStop(_logger, ex.Message);
            return;
        }

        if (id is not { Length: > 0 })
        {
            EdgeLog.InvalidStop(_logger, "id is required");
            return;
        }

        if (attempt is { } stoppedAttempt)
        {
            // Before anything else: a start of this attempt (of this dispatch of it, when the stop names one) that arrives
            // from now on is not run (HandleStart).
            _stoppedAttempts.Record(id, dispatch is { } d ? new Run(stoppedAttempt, d) : Run.Every(stoppedAttempt));
        }

        if (StopTask(id, (started, startedDispatch) => IsNewerRun(started, startedDispatch, attempt, dispatch), out var newer))
        {
            return;
        }

        if (newer)
        {
            // A late stop (a retried or replayed publish) of an attempt the manager has since replaced by a new start.
            EdgeLog.StaleStop(_logger, id, attempt!.Value);
        }
        else
        {
            EdgeLog.StopUnknown(_logger, id);
        }
    }

    /// <summary>
    /// Handles an invoke command (spec §1.10, §2.10): runs the latent task once with the request's env merged over the
    /// deployed one and its inputs (or the deployed inputs), and answers on <c>invoke_results</c>. An unknown id gets
    /// the original's "has not been precompiled" error, which makes the manager try another proplet or redeploy.
    /// </summary>
    public void HandleInvoke(ReadOnlyMemory<byte> payload)
    {
        InvokeMessage? message;
        try
        {
            message = JsonSerializer.Deserialize<InvokeMessage>(payload.Span);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // Answered when its id and target can still be read, as a start is (StartRequestParser): the manager waits
            // for the answer of every invocation it sent (spec §1.10: 30 s), and got none.
            var problem = JsonProblem.Describe(ex, typeof(InvokeMessage), JsonSerializerOptions.Default);
            EdgeLog.InvalidInvoke(_logger, problem);
            var salvaged = StartRequestParser.Salvage(payload.Span);
            if (salvaged.Id is { } id && !salvaged.TargetedElsewhere(_settings.EntityId) && Volatile.Read(ref _closing) == 0)
            {
                Track(PublishInvokeResultAsync(id, salvaged.InvocationId, TaskOutcome.Failure($"invalid invoke request: {problem}")));
            }

            return;
        }

        if (message is not { Id.Length: > 0 })
        {
            EdgeLog.InvalidInvoke(_logger, "id is required");
            return;
        }

        if (!message.Broadcast && message.PropletId is { Length: > 0 } target && !string.Equals(target, _settings.EntityId, StringComparison.Ordinal))
        {
            return;
        }

        if (Volatile.Read(ref _closing) == 1)
        {
            // As a start during shutdown: nothing would wait for it, and the slots and the lifetime are being disposed.
            EdgeLog.InvokeDuringShutdown(_logger, message.Id);
            return;
        }

        Track(InvokeAsync(message));
    }

    private async Task InvokeAsync(InvokeMessage message)
    {
        var id = message.Id;
        TaskOutcome outcome;
        if (!_latent.TryGetValue(id, out var latent))
        {
            outcome = TaskOutcome.Failure($"task {id} has not been precompiled; deploy it as a latent task first");
        }
        else if (latent.IsHttpProxy)
        {
            outcome = TaskOutcome.Failure($"task {id} is an HTTP proxy component; it is served by its listener, not by direct invocation");
        }
        else if ((StartRequestParser.EnvProblem(message.Env) ?? StartRequestParser.NulProblem(message.Inputs, "inputs")) is { } problem)
        {
            // Nothing the guest can be given; a start refuses it too (StartRequestParser).
            outcome = TaskOutcome.Failure($"invalid invoke request: {problem}");
        }
        else
        {
            outcome = await RunInvocationAsync(latent, message);
        }

        if (Volatile.Read(ref _closing) == 1)
        {
            // Shutting down began while it ran: its answer is dropped, as a task's is (the lifetime is ending).
            EdgeLog.ResultDropped(_logger, id);
            return;
        }

        await PublishInvokeResultAsync(id, message.InvocationId, outcome);
    }

    private Task PublishInvokeResultAsync(string id, string? invocationId, TaskOutcome outcome)
    {
        var reply = new InvokeResultMessage
        {
            TaskId = id,
            InvocationId = invocationId ?? "",
            PropletId = _settings.EntityId,
            Results = outcome.Results,
            Error = outcome.Error,
        };
        return PublishResultAsync(Topics.InvokeResults, id, JsonSerializer.SerializeToUtf8Bytes(reply),
            error => JsonSerializer.SerializeToUtf8Bytes(reply with { Results = "", Error = error })); // the caller waiting for the reply learns why
    }

    private async Task<TaskOutcome> RunInvocationAsync(LatentTask latent, InvokeMessage message)
    {
        var deployed = latent.Request;
        var env = new Dictionary<string, string>(deployed.Env, StringComparer.Ordinal);
        foreach (var (key, value) in message.Env ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        var request = deployed with
        {
            Message = deployed.Message with
            {
                Id = $"{deployed.Id}-inv-{Guid.NewGuid()}",
                Env = env,
                Inputs = message.Inputs is { Count: > 0 } inputs ? inputs : deployed.Message.Inputs,
                Daemon = false,
            },
        };
        using var invocation = new RunningTask(request);
        latent.Invocations.TryAdd(invocation, 0);
        var slot = false;
        try
        {
            if (latent.Deployment.Reason != StopReason.None)
            {
                invocation.Abort(latent.Deployment.Reason);
            }
            else if (Volatile.Read(ref _closing) == 1)
            {
                invocation.Abort(StopReason.ShuttingDown); // shutting down began after HandleInvoke's check
            }

            await _slots.WaitAsync(invocation.Aborted);
            slot = true;
            using var timer = request.Limits.Timeout is { } limit
                ? new Timer(_ => invocation.Abort(StopReason.TimedOut), null, limit, Timeout.InfiniteTimeSpan)
                : null;
            return await _runtime.InvokeAsync(invocation, latent.Prepared, CancellationToken.None);
        }
        catch (OperationCanceledException) when (invocation.Aborted.IsCancellationRequested)
        {
            return InProcessRuntime.Stopped(invocation) ?? TaskOutcome.Failure($"Task {invocation.Id} was stopped before completion");
        }
        catch (Exception ex)
        {
            // Out of memory too, as ExecuteAsync: the caller gets its answer (the manager waits for every invocation's).
            EdgeLog.TaskCrashed(_logger, invocation.Id, ex);
            return TaskOutcome.Failure($"internal proplet error: {ex.Message}");
        }
        finally
        {
            if (slot)
            {
                ReleaseSlotAfter(invocation.GuestReturned);
            }

            latent.Invocations.TryRemove(invocation, out _);
        }
    }

    /// <summary>
    /// A latent start (spec §2.10): fetch and precompile, then keep the task (no result) until a stop; a failure is an
    /// error result and the task is forgotten.
    /// </summary>
    private async Task DeployLatentAsync(RunningTask task)
    {
        await Task.Yield();
        var request = task.Request;
        string error;
        var slot = false;
        try
        {
            // Compiled in a slot, as a run is (fetched as a run's binary is, FetchForSlotAsync): a compile is a guest
            // thread's work (and memory) too, and 50 latent starts at once compiled at once, each on a thread of its own,
            // their inline modules held beyond PROPLET_MAX_WAITING_BYTES. The slot goes back once compiled: a deployed
            // task holds none, its invocations take theirs.
            var binary = (await FetchForSlotAsync(task, () => slot = true)).Bytes;
            task.Aborted.ThrowIfCancellationRequested(); // stopped as its binary came: not compiled for nothing
            // Compiled on a guest thread, as a run is (InProcessRuntime): a component takes seconds to compile, and on a
            // .NET pool thread each deployment blocked one that MQTT and the timers need.
            var preparation = await GuestThreads.RunAsync(() => _runtime.Prepare(task, binary));
            _slots.Release();
            slot = false;
            if (preparation.Error is null)
            {
                var deployed = new LatentTask(task, preparation.Prepared!, preparation.IsHttpProxy);
                bool stopped;
                lock (_admissionGate)
                {
                    // With the stop's side of this lock (StopTask): a stop finds the task either deployed, and forgets it
                    // (no result, as for any deployed latent task), or compiling, and aborts it (then it is not deployed
                    // and gets the stopped result below). Deployed first and checked after, a stop in between disposed
                    // the task under the check ("internal proplet error: Cannot access a disposed object"), or aborted it
                    // after the check and left it deployed, stopped, holding its id for ever.
                    stopped = task.Reason != StopReason.None;
                    if (!stopped)
                    {
                        _latent[request.Id] = deployed;
                    }
                }

                if (!stopped)
                {
                    EdgeLog.LatentDeployed(_logger, request.Id);
                    return;
                }

                error = InProcessRuntime.Stopped(task)?.Error ?? $"Task {request.Id} was stopped before completion";
            }
            else
            {
                error = preparation.Error;
            }
        }
        catch (OperationCanceledException) when (task.Aborted.IsCancellationRequested)
        {
            error = InProcessRuntime.Stopped(task)?.Error ?? $"Task {request.Id} was stopped before completion";
        }
        catch (Exception ex) when (ex is FetchException or WaitingFullException)
        {
            error = ex.Message;
        }
        catch (Exception ex)
        {
            // Out of memory too, as ExecuteAsync: the deployment fails and lets go of its id.
            EdgeLog.TaskCrashed(_logger, request.Id, ex);
            error = $"internal proplet error: {ex.Message}";
        }
        finally
        {
            if (slot)
            {
                _slots.Release();
            }
        }

        RecordFinished(request.Id, task.Run);
        _running.TryRemove(new KeyValuePair<string, RunningTask>(request.Id, task));
        var shuttingDown = task.Reason == StopReason.ShuttingDown;
        task.Dispose();
        Interlocked.Increment(ref _failed);
        EdgeLog.TaskFailed(_logger, request.Id, error);
        if (!shuttingDown)
        {
            await PublishResultAsync(request.Id, TaskOutcome.Failure(error), request.Attempt, task.Dispatch);
        }
    }

    /// <summary>Ends every task (no results are published for the runs it ends) and waits for the pipeline to settle:
    /// the results of runs that had ended go out meanwhile, within the drain budget.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closing, 1) == 1)
        {
            return;
        }

        foreach (var task in _running.Values)
        {
            task.Abort(StopReason.ShuttingDown);
        }

        foreach (var invocation in _latent.Values.SelectMany(l => l.Invocations.Keys))
        {
            invocation.Abort(StopReason.ShuttingDown);
        }

        await _lifetime.CancelAsync();
        await DrainAsync(DrainBudget);
        await _publishing.CancelAsync(); // the budget is spent: results still waiting for the broker are dropped
        await DrainAsync(TimeSpan.FromSeconds(1));

        // The slots, the lifetime and the publishing source are not disposed: an execution still running past the drain
        // (a guest in a host call, an external runtime slow to die) uses them as it ends, and a start that passed the
        // closing check as it was set takes the lifetime's token. Disposed, its slot's release threw, and the task never
        // let go of its id; none holds anything a disposal would free (no timer, no wait handle asked for).
    }

    /// <summary>How long shutdown waits for the executions to end before it drops the results still being published.</summary>
    internal TimeSpan DrainBudget { get; init; } = TimeSpan.FromSeconds(10);

    private async Task DrainAsync(TimeSpan budget)
    {
        try
        {
            await Task.WhenAll(_executions.Keys).WaitAsync(budget, CancellationToken.None);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            // best effort on the way out
        }
    }

    private void Track(Task execution)
    {
        _executions.TryAdd(execution, 0);
        _ = execution.ContinueWith(t => _executions.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task ExecuteAsync(RunningTask task)
    {
        await Task.Yield();
        var request = task.Request;
        var daemon = request.Message.Daemon;
        var resultSent = false; // a daemon's or a served proxy's "started" result: the end of its run sends none
        // Stopped while its "started" result was being published (the broker slow or away): that result may reach the
        // manager after the stop, so its end follows it. A stop before it is published: no "started" result at all, the
        // stopped one below (as for a stop while it was fetched).
        var stoppedWhileStarting = false;
        var slot = false;
        TaskOutcome outcome;
        using var monitoring = CancellationTokenSource.CreateLinkedTokenSource(task.Aborted);
        Task? monitor = null;
        Task<TaskOutcome>? run = null;
        try
        {
            var fetched = daemon ? await _fetcher.FetchAsync(request, task.Aborted) : await FetchForSlotAsync(task, () => slot = true);
            var binary = fetched.Bytes;
            task.BinarySha256 = fetched.Sha256;
            // A served HTTP proxy's time limit applies to each request (below), so its timer is never armed: armed here,
            // compiling the component counted against it and a short limit stopped the task before it served at all.
            using var timer = !daemon && !_runtime.ServesHttpProxy(binary) && request.Limits.Timeout is { } limit
                ? new Timer(_ => task.Abort(StopReason.TimedOut), null, limit, Timeout.InfiniteTimeSpan)
                : null;
            // Stopped while it was fetched (a fetch that ends as the stop comes: an inline module being decoded, an image
            // whose last chunk came with it): not started at all, and the stopped result below, as for a stop while it
            // waited for its binary. Before, it ran briefly, and a daemon published a "started" success after its stop.
            task.Aborted.ThrowIfCancellationRequested();
            monitor = _monitor?.MonitorAsync(task, monitoring.Token);
            _plugins?.OnTaskStart(InfoOf(request));
            run = _runtime.RunAsync(task, binary, CancellationToken.None);
            if (daemon)
            {
                // The original reports a daemon as done at once (spec §2.9); the workload keeps running. Started first and
                // reported after: the publish waits while the broker is unreachable, and the daemon did not run for all
                // that time. Its run sends no result of its own (below), so nothing of it can overtake this one.
                await PublishStartedAsync(null); // as the original: its "completion" is the start
            }

            if (!daemon && await Task.WhenAny(run, task.Started) != run)
            {
                // A served HTTP proxy (spec §2.11): "started at port N" now; it runs until stopped like a daemon, outside
                // the concurrency slots, and its time limit applies to each request instead of to the task.
                timer?.Dispose();
                daemon = true;
                _slots.Release();
                slot = false;
                await PublishStartedAsync(await task.Started);
            }

            outcome = await run;

            // A serving run's "started" result (a daemon's empty one, a proxy's "started at port N"), unless it was stopped
            // first; a stop during its publish makes its end follow it (see stoppedWhileStarting).
            async Task PublishStartedAsync(string? started)
            {
                if (task.Reason != StopReason.None)
                {
                    return;
                }

                _plugins?.OnTaskComplete(request.Id, true, started, null);
                task.Serving = true;
                await PublishResultAsync(request.Id, TaskOutcome.Success(started ?? ""), request.Attempt, task.Dispatch, stillRunning: true);
                resultSent = true;
                stoppedWhileStarting = task.Reason == StopReason.Stopped;
            }
        }
        catch (OperationCanceledException) when (task.Aborted.IsCancellationRequested)
        {
            outcome = InProcessRuntime.Stopped(task) ?? TaskOutcome.Failure($"Task {request.Id} was stopped before completion");
        }
        catch (Exception ex) when (ex is FetchException or WaitingFullException)
        {
            outcome = TaskOutcome.Failure(ex.Message);
        }
        catch (Exception ex)
        {
            // Out of memory too (a module, an input or a result too large to allocate: the allocation failed, nothing was
            // taken), as the proxy does (docs/proxy.md): the task fails and lets go of its id and slot, the proplet goes
            // on. Left uncaught, the task held its id for ever (later starts dropped as duplicates) and sent no result.
            EdgeLog.TaskCrashed(_logger, request.Id, ex);
            outcome = TaskOutcome.Failure($"internal proplet error: {ex.Message}");
        }
        finally
        {
            if (slot)
            {
                ReleaseSlotAfter(task.GuestReturned);
            }

            await monitoring.CancelAsync();
        }

        // Whether the shutdown ended the run, decided as the run ends: its abort may come after (the task holds its id
        // until below), and a run that had finished, above all one that succeeded, has a result the manager waits for.
        var shuttingDown = !outcome.Succeeded && task.Reason == StopReason.ShuttingDown;

        if (run is { IsCompleted: false })
        {
            // Failed while its run goes on (publishing a daemon's started result threw): ended, not left running without
            // its id, its slot or a stop that could reach it.
            task.Abort(StopReason.Stopped);
            await run.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        if (monitor is not null)
        {
            await monitor; // it ends on its own errors (TaskMonitor), so the result below never depends on it
        }

        RecordFinished(request.Id, task.Run); // before it lets go of its id: a start of this run from now on is not run again
        _running.TryRemove(new KeyValuePair<string, RunningTask>(request.Id, task));
        task.Dispose();
        if (outcome.Succeeded)
        {
            Interlocked.Increment(ref _completed);
            EdgeLog.TaskSucceeded(_logger, request.Id);
        }
        else
        {
            Interlocked.Increment(ref _failed);
            EdgeLog.TaskFailed(_logger, request.Id, outcome.Error!);
        }

        if (resultSent)
        {
            // Its "started" result was sent when it started (a daemon that never started, its fetch failed or it was
            // stopped while fetching, gets its error below). A stop or the proplet's shutdown ended it: the manager
            // stopped it or learns of the shutdown otherwise. Ended on its own (exited, trapped, crashed), its end is
            // published ("running": false), so the manager no longer takes it for serving (the original sends nothing).
            // So is the end of one stopped while its "started" result was on its way: that may have come after the stop.
            if (task.Reason == StopReason.None || stoppedWhileStarting)
            {
                EdgeLog.ServingRunEnded(_logger, request.Id, outcome.Error ?? "no error");
                await PublishResultAsync(request.Id, outcome, request.Attempt, task.Dispatch, ended: true);
            }

            return;
        }

        if (shuttingDown)
        {
            EdgeLog.ResultDropped(_logger, request.Id);
            return;
        }

        _plugins?.OnTaskComplete(request.Id, outcome.Succeeded, outcome.Results is { Length: > 0 } output ? output : null, outcome.Error);
        await PublishResultAsync(request.Id, outcome, request.Attempt, task.Dispatch);
    }

    /// <summary>
    /// Gives a slot back once <paramref name="guest"/>, the thread running a task's guest, has returned. A stopped or
    /// timed-out guest blocked in a host call (a preview 2 <c>wasi:io/poll</c> sleep) or in an uninterruptible compile
    /// has its stopped result out after the grace period (InProcessRuntime) while its thread, store, pool instance and
    /// epoch lease live on: freed at once, its slot let another guest start beside it, and repeated stops of such guests
    /// ran more guests than PROPLET_MAX_CONCURRENT_TASKS and exhausted PROPLET_WASM_POOL_INSTANCES.
    /// </summary>
    private void ReleaseSlotAfter(Task guest)
    {
        if (guest.IsCompleted)
        {
            _slots.Release();
            return;
        }

        _ = guest.ContinueWith(_ => _slots.Release(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Gets <paramref name="task"/>'s binary and a slot to run it in (<paramref name="tookSlot"/> is called once it has
    /// one). An inline module takes its slot first: what waits is then its text, bounded by PROPLET_MAX_WAITING_BYTES,
    /// and decoding it is quick. A remote one is fetched first, outside the slots: a fetch waits for the network, and in a
    /// slot the starts whose proxy did not answer held every slot for PROPLET_CHUNK_WAIT while inline tasks queued behind
    /// them. The fetches are bounded on their own (as many at once as there are slots, so what they download or assemble
    /// is bounded as before), and a fetched binary waiting for its slot counts against PROPLET_MAX_WAITING_BYTES as an
    /// inline module does.
    /// </summary>
    private async Task<FetchedBinary> FetchForSlotAsync(RunningTask task, Action tookSlot)
    {
        if (task.Request.Message.File is { Length: > 0 } file)
        {
            _fetcher.CheckInlineSize(file);
            await WaitForSlotAsync(task, 2L * file.Length);
            tookSlot();
            return await _fetcher.FetchAsync(task.Request, task.Aborted);
        }

        FetchedBinary fetched;
        await _fetches.WaitAsync(task.Aborted);
        try
        {
            fetched = await _fetcher.FetchAsync(task.Request, task.Aborted);
        }
        finally
        {
            _fetches.Release();
        }

        await WaitForSlotAsync(task, fetched.Bytes.Length);
        tookSlot();
        return fetched;
    }

    /// <summary>
    /// Takes a slot for <paramref name="task"/>, waiting for one when all are taken. A waiting start holds its module
    /// (<paramref name="held"/> bytes: an inline one's text, a start message may be as large as the broker's packets, ~20
    /// MB in memory for 10 MiB; a fetched one's bytes), so what the waiting starts hold together is bounded by
    /// PROPLET_MAX_WAITING_BYTES: a flood of large starts beyond it is refused (<see cref="WaitingFullException"/>, the
    /// task's error result) instead of exhausting the proplet's memory.
    /// </summary>
    private async Task WaitForSlotAsync(RunningTask task, long held)
    {
        if (await _slots.WaitAsync(0, task.Aborted))
        {
            return;
        }

        var waiting = Interlocked.Add(ref _waitingBytes, held);
        try
        {
            if (held > 0 && waiting > _settings.MaxWaitingBytes)
            {
                throw new WaitingFullException(
                    string.Create(
                        CultureInfo.InvariantCulture,
                        $"proplet {_settings.EntityId} is busy: the starts waiting for one of its {_settings.MaxConcurrentTasks} task slots already hold {Mib(waiting - held):0.0} MiB of modules, and this one's {Mib(held):0.0} MiB would pass PROPLET_MAX_WAITING_BYTES ({Mib(_settings.MaxWaitingBytes):0.0} MiB)"));
            }

            await _slots.WaitAsync(task.Aborted);
        }
        finally
        {
            Interlocked.Add(ref _waitingBytes, -held);
        }
    }

    /// <summary>Remembers task <paramref name="id"/>'s <paramref name="run"/> as finished, unless it is ending because the
    /// proplet shuts down (then nothing is reported, and the manager sends it elsewhere).</summary>
    private void RecordFinished(string id, Run? run)
    {
        if (run is { } finished && Volatile.Read(ref _closing) == 0)
        {
            _finishedRuns.Record(id, finished);
        }
    }

    private static double Mib(long bytes) => bytes / (double)(1 << 20);

    private sealed class WaitingFullException(string message) : Exception(message);

    /// <summary>Publishes a task's result, naming the <paramref name="attempt"/> its start named (our manager ignores
    /// a result of another attempt than the current one; without one, as from the original proplet, it applies), and
    /// with <paramref name="stillRunning"/> saying the run goes on after it (a daemon's or a served proxy's "started").</summary>
    private async Task PublishResultAsync(string taskId, TaskOutcome outcome, int? attempt, int? dispatch, bool stillRunning = false, bool ended = false)
    {
        var message = new ResultMessage
        {
            TaskId = taskId,
            PropletId = _settings.EntityId,
            Results = JsonSerializer.SerializeToElement(outcome.Results),
            Error = outcome.Error is null ? null : JsonSerializer.SerializeToElement(outcome.Error),
            Attempt = attempt,
            Dispatch = attempt is null ? null : dispatch,
            Running = stillRunning ? true : ended ? false : null,
        };
        var payload = JsonSerializer.SerializeToUtf8Bytes(message);
        if (attempt is { } named)
        {
            _finishedResults.Record(taskId, named, payload);
        }

        await PublishResultPayloadAsync(taskId, payload);
    }

    /// <summary>A result this proplet published before (<paramref name="payload"/>), as the result of <paramref name="run"/>'s
    /// dispatch, and remembered so.</summary>
    private byte[] OfDispatch(string taskId, Run run, byte[] payload)
    {
        var message = JsonSerializer.Deserialize<ResultMessage>(payload)!;
        var again = JsonSerializer.SerializeToUtf8Bytes(message with { Dispatch = run.Dispatch });
        _finishedResults.Record(taskId, run.Attempt, again);
        return again;
    }

    private Task PublishResultPayloadAsync(string taskId, byte[] payload) =>
        PublishResultAsync(Topics.Results, taskId, payload, error =>
        {
            var failure = TaskOutcome.Failure(error);
            var message = JsonSerializer.Deserialize<ResultMessage>(payload)!;
            var instead = JsonSerializer.SerializeToUtf8Bytes(message with
            {
                Results = JsonSerializer.SerializeToElement(failure.Results),
                Error = JsonSerializer.SerializeToElement(failure.Error),
            });
            if (message.Attempt is { } attempt)
            {
                _finishedResults.Record(taskId, attempt, instead); // a later dispatch of it gets the error at once
            }

            return instead;
        });

    /// <summary>Publishes a task's result or an invocation's reply on <paramref name="topic"/>; one larger than the
    /// broker's Maximum Packet Size goes out as <paramref name="instead"/> makes it of the error naming both sizes (the
    /// broker would close the connection for it, and the manager heard nothing of the task).</summary>
    private async Task PublishResultAsync(string topic, string taskId, byte[] payload, Func<string, byte[]> instead)
    {
        try
        {
            try
            {
                await _publisher.PublishAsync(topic, payload, _publishing.Token);
            }
            catch (BrokerPublishException ex) when (ex.MaximumPacketSize is { } maximum)
            {
                EdgeLog.ResultTooLarge(_logger, taskId, ex.Message);
                var error = $"Task {taskId}: its result of {ex.PacketSize ?? payload.Length} bytes exceeds the broker's maximum packet size of {maximum} bytes";
                await _publisher.PublishAsync(topic, instead(error), _publishing.Token);
            }
        }
        catch (OperationCanceledException)
        {
            EdgeLog.ResultDropped(_logger, taskId);
        }
        catch (BrokerPublishException ex) when (ex.MaximumPacketSize is not null)
        {
            EdgeLog.ErrorResultTooLarge(_logger, taskId, ex.Message);
        }
    }
}
