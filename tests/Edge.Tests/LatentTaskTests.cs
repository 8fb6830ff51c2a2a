using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Fetching;
using Propeller.Edge.Tasks;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>Latent tasks and invoke on the proplet (spec §1.10, §1.12, §2.10).</summary>
public sealed class LatentTaskTests : IAsyncDisposable
{
    private readonly InMemoryPublisher _published = new();
    private readonly PropletSettings _settings = TestSettings.Create("me");
    private readonly InProcessRuntime _runtime;
    private readonly HttpClient _http = new();
    private readonly TaskRunner _runner;

    public LatentTaskTests()
    {
        _runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance);
        var fetcher = new BinaryFetcher(_settings, new ChunkAssembler(_settings.MaxBinarySize, TimeProvider.System), _published, _http);
        _runner = new TaskRunner(_settings, _runtime, fetcher, _published, null, NullLogger<TaskRunner>.Instance);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        await _runner.DisposeAsync();
        _runtime.Dispose();
        _http.Dispose();
    }

    [Fact]
    public async Task GivenADeployedLatentTask_WhenInvoked_ThenEachInvocationAnswersWithItsId()
    {
        await DeployAsync("calc", "add", ["1", "2"]);

        Invoke(new { id = "calc", invocation_id = "i1", inputs = new[] { "40", "2" }, proplet_id = "me" });
        (await NextInvokeResultAsync()).GetRawText().ShouldBe("""{"task_id":"calc","invocation_id":"i1","proplet_id":"me","results":"42","error":null}""");

        Invoke(new { id = "calc", invocation_id = "i2" });
        (await NextInvokeResultAsync()).GetProperty("results").GetString().ShouldBe("3");

        Invoke(new { id = "calc" });
        (await NextInvokeResultAsync()).GetProperty("invocation_id").GetString().ShouldBe("");
        _published.TryNext(out var extra).ShouldBeFalse($"no task result for a latent task, got {extra.Path}");
    }

    [Fact]
    public async Task GivenAnInterfaceExport_WhenInvokedWithWave_ThenTheResultIsWave()
    {
        await DeployAsync("greeter", "propeller:test/greeter@0.1.0#greet", ["\"nobody\""]);

        Invoke(new { id = "greeter", invocation_id = "g", inputs = new[] { "\"world\"" } });

        (await NextInvokeResultAsync()).GetProperty("results").GetString().ShouldBe("\"Hello, world\"");
    }

    [Fact]
    public async Task GivenUnknownOrStoppedTasks_WhenInvoked_ThenTheManagerSeesNotPrecompiled()
    {
        Invoke(new { id = "ghost", invocation_id = "x" });
        (await NextInvokeResultAsync()).GetProperty("error").GetString().ShouldBe("task ghost has not been precompiled; deploy it as a latent task first");

        await DeployAsync("gone", "add", ["1", "2"]);
        _runner.HandleStop(JsonSerializer.SerializeToUtf8Bytes(new { id = "gone" }));
        Invoke(new { id = "gone", invocation_id = "y" });
        (await NextInvokeResultAsync()).GetProperty("error").GetString().ShouldBe("task gone has not been precompiled; deploy it as a latent task first");
        _runner.RunningCount.ShouldBe(0);
    }

    [Fact]
    public async Task GivenInvokesForOtherProplets_WhenHandled_ThenNothingIsPublished()
    {
        Invoke(new { id = "calc", proplet_id = "other" });
        _runner.HandleInvoke("not json"u8.ToArray());
        _runner.HandleInvoke("""{"id":""}"""u8.ToArray());
        await Task.Yield();

        _published.TryNext(out _).ShouldBeFalse();
    }

    [Fact]
    public async Task GivenBadInvocations_WhenInvoked_ThenTheErrorsComeBackAndTheTaskStaysDeployed()
    {
        await DeployAsync("calc", "add", ["1", "2"]);

        Invoke(new { id = "calc", invocation_id = "a", inputs = new[] { "1" } });
        (await NextInvokeResultAsync()).GetProperty("error").GetString().ShouldBe("Argument count mismatch for 'add': expected 2 but got 1");
        Invoke(new { id = "calc", invocation_id = "b", inputs = new[] { "x", "1" } });
        (await NextInvokeResultAsync()).GetProperty("error").GetString().ShouldBe("Failed to parse WAVE argument 'x' for export 'add': expected a s32 (a decimal integer) at 0");

        Invoke(new { id = "calc", invocation_id = "c" });
        (await NextInvokeResultAsync()).GetProperty("results").GetString().ShouldBe("3");
    }

    /// <summary>
    /// An invoke's env with a null value is refused with an invoke error, as a start's is (StartRequestParser), instead of
    /// reaching the guest as a null variable; the task stays deployed.
    /// </summary>
    [Fact]
    public async Task GivenAnInvokeWithANullEnvValue_WhenInvoked_ThenItIsRefusedAndTheTaskStaysDeployed()
    {
        await DeployAsync("calc", "add", ["1", "2"]);

        _runner.HandleInvoke("""{"id":"calc","invocation_id":"n","env":{"A":"x","B":null}}"""u8.ToArray());
        var refused = await NextInvokeResultAsync();

        (refused.GetProperty("invocation_id").GetString(), refused.GetProperty("error").GetString()).ShouldBe(("n", "invalid invoke request: env values must be strings, not null"));
        Invoke(new { id = "calc", invocation_id = "ok", env = new { A = "x" } });
        (await NextInvokeResultAsync()).GetProperty("results").GetString().ShouldBe("3");
    }

    /// <summary>
    /// An invoke that cannot be decoded but names its task (and this proplet, or none) is answered with the decoding error
    /// on invoke_results, as a start is; it was only logged, and the manager waited its 30 s for an answer.
    /// </summary>
    [Fact]
    public async Task GivenAnInvokeThatCannotBeDecoded_WhenItNamesItsTask_ThenTheErrorIsTheAnswer()
    {
        await DeployAsync("calc", "add", ["1", "2"]);

        _runner.HandleInvoke("""{"id":"calc","invocation_id":"other","proplet_id":"someone-else","inputs":[true]}"""u8.ToArray());
        _runner.HandleInvoke("""{"id":"calc","invocation_id":"bad","proplet_id":"me","inputs":[true]}"""u8.ToArray());
        var refused = await NextInvokeResultAsync();

        refused.GetProperty("invocation_id").GetString().ShouldBe("bad");
        refused.GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith("invalid invoke request: inputs[0]");
        _runner.HandleInvoke("""{"id":"calc","invocation_id":"typed","env":5}"""u8.ToArray());
        (await NextInvokeResultAsync()).GetProperty("error").GetString().ShouldBe("invalid invoke request: env: expected an object of strings");
        Invoke(new { id = "calc", invocation_id = "ok" });
        (await NextInvokeResultAsync()).GetProperty("results").GetString().ShouldBe("3");
    }

    /// <summary>
    /// An invoke's env name that cannot be a guest's variable (empty, with '=' or NUL) is refused like a start's: an empty
    /// name failed the invocation as "internal proplet error", a name with '=' reached the guest split at it. So is an
    /// input holding NUL (cut there when it is a program's argument).
    /// </summary>
    [Fact]
    public async Task GivenAnInvokeWithAnEnvNameOrInputTheGuestCannotHave_WhenInvoked_ThenItIsRefusedAndTheTaskStaysDeployed()
    {
        await DeployAsync("calc", "add", ["1", "2"]);

        _runner.HandleInvoke("""{"id":"calc","invocation_id":"e","env":{"":"x"}}"""u8.ToArray());
        var empty = await NextInvokeResultAsync();
        _runner.HandleInvoke("""{"id":"calc","invocation_id":"q","env":{"A=B":"x"}}"""u8.ToArray());
        var equals = await NextInvokeResultAsync();

        _runner.HandleInvoke("""{"id":"calc","invocation_id":"z","inputs":["\"a\u0000\"","1"]}"""u8.ToArray());
        var nul = await NextInvokeResultAsync();

        empty.GetProperty("error").GetString().ShouldBe("invalid invoke request: env names must be non-empty without '=' or NUL, and values without NUL");
        equals.GetProperty("error").GetString().ShouldBe(empty.GetProperty("error").GetString());
        nul.GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith("invalid invoke request: inputs must not hold NUL");
        Invoke(new { id = "calc", invocation_id = "ok", env = new { A = "x" } });
        (await NextInvokeResultAsync()).GetProperty("results").GetString().ShouldBe("3");
    }

    /// <summary>
    /// An invoke that arrives once the proplet is shutting down is dropped like a start (nothing is published); it used to
    /// run into the disposed semaphore and token source, an ObjectDisposedException that nobody observed.
    /// </summary>
    [Fact]
    public async Task GivenAShutDownRunner_WhenAnInvokeArrives_ThenItIsDroppedWithoutAnUnobservedError()
    {
        await DeployAsync("calc", "add", ["1", "2"]);
        var unobserved = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        void Record(object? sender, UnobservedTaskExceptionEventArgs e)
        {
            if (e.Exception.InnerExceptions.Any(x => x is ObjectDisposedException))
            {
                unobserved.Enqueue(e.Exception);
            }
        }

        TaskScheduler.UnobservedTaskException += Record;
        try
        {
            await _runner.DisposeAsync();
            Invoke(new { id = "calc", invocation_id = "late" });
            await Task.Delay(500, Ct);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= Record;
        }

        unobserved.ShouldBeEmpty();
        _published.TryNext(out var extra).ShouldBeFalse(extra.Path);
    }

    [Fact]
    public async Task GivenASpinningLatentTask_WhenInvokedWithATimeout_ThenTheInvocationEndsAndTheNextStillWorks()
    {
        await DeployAsync("spinner", "spin", [], ["--timeout", "0.2"]);

        Invoke(new { id = "spinner", invocation_id = "s" });

        (await NextInvokeResultAsync()).GetProperty("error").GetString().ShouldNotBeNull().ShouldContain("exceeded its time limit of 0.2 s");
    }

    [Fact]
    public async Task GivenAStopDuringAnInvocation_WhenHandled_ThenTheInvocationEnds()
    {
        await DeployAsync("spinner", "spin", []);

        Invoke(new { id = "spinner", invocation_id = "s" });
        await Task.Delay(50, Ct);
        _runner.HandleStop(JsonSerializer.SerializeToUtf8Bytes(new { id = "spinner" }));

        (await NextInvokeResultAsync()).GetProperty("error").GetString().ShouldNotBeNull().ShouldContain("was stopped before completion");
    }

    [Fact]
    public async Task GivenALatentCoreModule_WhenStarted_ThenItIsRefused()
    {
        Start(new { id = "core", name = "main", file = Modules.AdditionBase64, latent = true });

        (await _published.NextAsync(Topics.Results, Ct)).GetProperty("error").GetString().ShouldBe("latent tasks require a WASM component; task core is not a component");
        _runner.RunningCount.ShouldBe(0);
    }

    [Fact]
    public async Task GivenALatentTaskStillCompiling_WhenStopped_ThenItIsNotDeployedAndAStoppedResultIsSent()
    {
        using var gate = new ManualResetEventSlim();
        var runtime = new GatedPrepare(_runtime, gate);
        var fetcher = new BinaryFetcher(_settings, new ChunkAssembler(_settings.MaxBinarySize, TimeProvider.System), _published, _http);
        await using var runner = new TaskRunner(_settings, runtime, fetcher, _published, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "slow", name = "add", file = Convert.ToBase64String(Components.Calculator), latent = true }));
        runtime.Preparing.Wait(TimeSpan.FromSeconds(30), Ct).ShouldBeTrue();

        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"slow"}"""));
        gate.Set();

        (await _published.NextAsync(Topics.Results, Ct)).GetProperty("error").GetString().ShouldNotBeNull().ShouldContain("stopped");
        runner.IsDeployed("slow").ShouldBeFalse();
        runner.RunningCount.ShouldBe(0);
    }

    /// <summary>A latent task's component is compiled on a guest thread, as a task's run is: on a .NET pool thread, every
    /// deployment blocked one for the seconds a component takes to compile (MQTT and the timers wait for them).</summary>
    [Fact]
    public async Task GivenALatentStart_WhenItsComponentIsCompiled_ThenNoPoolThreadIsBlocked()
    {
        using var gate = new ManualResetEventSlim(initialState: true);
        var runtime = new GatedPrepare(_runtime, gate);
        var fetcher = new BinaryFetcher(_settings, new ChunkAssembler(_settings.MaxBinarySize, TimeProvider.System), _published, _http);
        await using var runner = new TaskRunner(_settings, runtime, fetcher, _published, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "compiled", name = "add", file = Convert.ToBase64String(Components.Calculator), latent = true }));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (!runner.IsDeployed("compiled"))
        {
            await Task.Delay(10, timeout.Token);
        }

        runtime.OnPoolThread.ShouldBe(false);
    }

    /// <summary>
    /// Stops that land as a deployment ends (a stopper spinning until the task shows as deployed): each ends it either
    /// deployed (no result) or compiling (the stopped result), never with an internal error (the stop disposed the task
    /// between the deployment and its check) and never leaving it deployed and stopped, holding its id. The window the fix
    /// closed was a few instructions wide and nothing outside the runner runs in it, so this cannot force it (it passed
    /// before the fix too); it guards the stop-as-it-deploys paths the lock now orders.
    /// </summary>
    [Fact]
    public async Task GivenStopsRacingDeployments_WhenHandled_ThenEachEndsWithoutAnInternalErrorAndLetsGoOfItsId()
    {
        var file = Convert.ToBase64String(Components.Calculator);
        for (var i = 0; i < 200; i++)
        {
            var id = $"race-{i}";
            Start(new { id, name = "add", file, latent = true });
            var stopper = Task.Factory.StartNew(
                () =>
                {
                    var spins = 0;
                    while (!_runner.IsDeployed(id) && _runner.RunningCount > 0 && ++spins < 500_000_000)
                    {
                        Thread.SpinWait(1);
                    }

                    _runner.HandleStop(Encoding.UTF8.GetBytes($$"""{"id":"{{id}}"}"""));
                },
                Ct,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
            await stopper;

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            while (_runner.RunningCount > 0)
            {
                await Task.Delay(5, timeout.Token);
            }
        }

        while (_published.TryNext(out var message))
        {
            if (message.Path == Topics.Results)
            {
                message.Payload.GetProperty("error").GetString().ShouldNotBeNull().ShouldContain("stopped");
            }
        }
    }

    /// <summary>
    /// A latent start is compiled in a concurrency slot, as a run is: with the only slot taken, it waits, and compiles
    /// once the slot is free. Before, latent starts compiled outside the limit, all at once, each on a guest thread.
    /// </summary>
    [Fact]
    public async Task GivenTheOnlySlotTaken_WhenALatentTaskIsStarted_ThenItCompilesOnlyOnceTheSlotIsFree()
    {
        var settings = _settings with { MaxConcurrentTasks = 1 };
        using var http = new HttpClient();
        var runtime = new HogAndPrepareRuntime();
        await using var runner = new TaskRunner(settings, runtime, new BinaryFetcher(settings, new ChunkAssembler(settings.MaxBinarySize, TimeProvider.System), _published, http), _published, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "hog", name = "main", file = Modules.AdditionBase64 }));
        await runtime.HogBegan.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);

        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "lat", name = "main", file = Modules.AdditionBase64, latent = true }));
        await Task.Delay(300, Ct); // room for a compile outside the slots to happen (the order below then fails)
        runtime.ReleaseHog();

        (await _published.NextAsync(Topics.Results, Ct)).GetProperty("task_id").GetString().ShouldBe("hog");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (!runner.IsDeployed("lat"))
        {
            await Task.Delay(5, timeout.Token);
        }

        runtime.Events.ShouldBe(["hog began", "hog returned", "lat prepared"]);
    }

    /// <summary>Runs until released; prepares any latent task at once (a handle that is never invoked).</summary>
    private sealed class HogAndPrepareRuntime : IWasmRuntime
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource HogBegan { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public System.Collections.Concurrent.ConcurrentQueue<string> Events { get; } = new();

        public string Name => "fake";

        public void ReleaseHog() => _released.TrySetResult();

        public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
        {
            Events.Enqueue($"{task.Id} began");
            HogBegan.TrySetResult();
            await _released.Task;
            Events.Enqueue($"{task.Id} returned");
            return TaskOutcome.Success("done");
        }

        public bool ServesHttpProxy(byte[] binary) => false;

        public LatentPreparation Prepare(RunningTask task, byte[] binary)
        {
            Events.Enqueue($"{task.Id} prepared");
            return new LatentPreparation(new object(), false, null);
        }

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>The in-process runtime whose precompile waits for a gate (a large component still compiling).</summary>
    private sealed class GatedPrepare(InProcessRuntime inner, ManualResetEventSlim gate) : IWasmRuntime
    {
        // Taken on the test's thread: Prepare runs on a guest thread, to which the test's context does not flow (there,
        // TestContext.Current is another test's, disposed).
        private readonly CancellationToken _cancellation = TestContext.Current.CancellationToken;

        public ManualResetEventSlim Preparing { get; } = new();

        public string Name => inner.Name;

        public Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken) => inner.RunAsync(task, binary, cancellationToken);

        public bool ServesHttpProxy(byte[] binary) => inner.ServesHttpProxy(binary);

        /// <summary>Whether the last <see cref="Prepare"/> ran on a .NET thread-pool thread.</summary>
        public bool? OnPoolThread { get; private set; }

        public LatentPreparation Prepare(RunningTask task, byte[] binary)
        {
            OnPoolThread = Thread.CurrentThread.IsThreadPoolThread;
            Preparing.Set();
            gate.Wait(_cancellation);
            return inner.Prepare(task, binary);
        }

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => inner.InvokeAsync(invocation, prepared, cancellationToken);
    }

    /// <summary>
    /// A deployed latent task dispatched back here (a start of a later dispatch of its attempt: the proplet had been
    /// taken for gone) is that dispatch from then on: it is reported so, and the stop of the earlier dispatch, arriving
    /// after the start, spares it. Before, both looked at the dispatch of the start that deployed it: it was reported as
    /// the earlier dispatch, and that stop forgot the deployment the task now waited on.
    /// </summary>
    [Fact]
    public async Task GivenALatentTaskDispatchedBackHere_WhenItsEarlierDispatchIsStopped_ThenItStaysDeployed()
    {
        object Deployment(int dispatch) => new { id = "back", name = "add", file = Convert.ToBase64String(Components.Calculator), inputs = new[] { "1", "2" }, latent = true, attempt = 1, dispatch };
        Start(Deployment(1));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (!_runner.IsDeployed("back"))
        {
            await Task.Delay(10, timeout.Token);
        }

        Start(Deployment(2));
        _runner.Held().ShouldBe([new HeldTask("back", 1, 2)]);
        _runner.HandleStop("""{"id":"back","attempt":1,"dispatch":1}"""u8.ToArray());

        _runner.IsDeployed("back").ShouldBeTrue();
        Invoke(new { id = "back", invocation_id = "i", inputs = new[] { "40", "2" } });
        (await NextInvokeResultAsync()).GetProperty("results").GetString().ShouldBe("42");
    }

    private async Task DeployAsync(string id, string name, string[] inputs, string[]? cliArgs = null)
    {
        Start(new { id, name, file = Convert.ToBase64String(Components.Calculator), inputs, cli_args = cliArgs, latent = true });
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (!_runner.IsDeployed(id))
        {
            await Task.Delay(10, timeout.Token);
        }
    }

    private void Start(object message) => _runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(message));

    private void Invoke(object message) => _runner.HandleInvoke(JsonSerializer.SerializeToUtf8Bytes(message));

    private Task<JsonElement> NextInvokeResultAsync() => _published.NextAsync(Topics.InvokeResults, Ct);
}
