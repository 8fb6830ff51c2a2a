using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Fetching;
using Propeller.Edge.Tasks;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Proplet;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>PROPLET_PLUGIN_DIR plugins in the start pipeline (spec propeller-edge.md §5, JSON core-module ABI).</summary>
public sealed class PropletPluginTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("proplet-plugins");

    public void Dispose() => _dir.Delete(recursive: true);

    /// <summary>A plugin whose hooks answer constant JSON (a 64 KiB input buffer at 65536, answers in data segments).</summary>
    private void Plugin(string name, params (string Hook, string Json)[] hooks)
    {
        var body = new StringBuilder();
        var offset = 1024;
        foreach (var (hook, json) in hooks)
        {
            var bytes = Encoding.UTF8.GetBytes(json);
            body.Append(System.Globalization.CultureInfo.InvariantCulture, $$"""(data (i32.const {{offset}}) "{{string.Concat(bytes.Select(b => $"\\{b:x2}"))}}")""");
            body.Append(System.Globalization.CultureInfo.InvariantCulture, $$"""(func (export "{{hook}}") (param i32 i32) (result i64) (i64.const {{((long)offset << 32) | (uint)bytes.Length}}))""");
            offset += 1024;
        }

        File.WriteAllBytes(Path.Combine(_dir.FullName, name + ".wasm"), Wat.ToWasm($$"""
            (module
              (memory (export "memory") 2)
              (func (export "plugin_alloc") (param i32) (result i32) (i32.const 65536))
              (func (export "plugin_free") (param i32 i32))
              {{body}})
            """));
    }

    private static async Task<JsonElement> RunAsync(PropletPluginChain plugins, object start)
    {
        await using var proplet = new Proplet(plugins);
        proplet.Runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(start));
        return await proplet.Published.NextAsync(Topics.Results, TestContext.Current.CancellationToken);
    }

    /// <summary>A task runner (proplet "me", in-process runtime) with <c>plugins</c>, publishing into <see cref="Published"/>.</summary>
    private sealed class Proplet : IAsyncDisposable
    {
        private readonly InProcessRuntime _runtime;
        private readonly HttpClient _http = new();

        public Proplet(PropletPluginChain? plugins = null)
        {
            var settings = TestSettings.Create("me");
            _runtime = new InProcessRuntime(settings, NullLogger<InProcessRuntime>.Instance);
            var fetcher = new BinaryFetcher(settings, new ChunkAssembler(settings.MaxBinarySize, TimeProvider.System), Published, _http);
            Runner = new TaskRunner(settings, _runtime, fetcher, Published, null, NullLogger<TaskRunner>.Instance, plugins);
        }

        public InMemoryPublisher Published { get; } = new();

        public TaskRunner Runner { get; }

        public async ValueTask DisposeAsync()
        {
            await Runner.DisposeAsync();
            _runtime.Dispose();
            _http.Dispose();
        }
    }

    [Fact]
    public async Task APluginsDeny_IsAnErrorResultWithItsReason()
    {
        Plugin("10-allow", ("authorize", """{"allow":true}"""));
        Plugin("20-deny", ("authorize", """{"allow":false,"reason":"no tasks today"}"""));
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance);

        var result = await RunAsync(plugins, new { id = "t1", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, proplet_id = "me" });

        result.GetProperty("task_id").GetString().ShouldBe("t1");
        result.GetProperty("error").GetString().ShouldBe("no tasks today");
    }

    [Fact]
    public async Task AllowedAndEnriched_TheTaskRuns()
    {
        Plugin("10-env", ("authorize", """{"allow":true}"""), ("enrich", """{"env":{"GREETING":"hi"}}"""));
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance);

        var result = await RunAsync(plugins, new { id = "t2", name = "main", file = Modules.AdditionBase64, inputs = new[] { "10", "32" }, proplet_id = "me" });

        result.GetProperty("results").GetString().ShouldBe("42");
        result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null);
    }

    /// <summary>
    /// A stop that arrives while the plugins are still deciding on the start (a slow authorize) cancels them: the task
    /// never runs and gets the stopped result at once. Before, the stop found nothing running and was dropped, and the
    /// task ran (or waited out the plugin's time limit) after it had been stopped.
    /// </summary>
    [Fact]
    public async Task AStopWhileThePluginsAreStillDeciding_CancelsThem_AndTheTaskNeverRuns()
    {
        var ct = TestContext.Current.CancellationToken;
        await File.WriteAllBytesAsync(Path.Combine(_dir.FullName, "10-slow.wasm"), Wat.ToWasm("""
            (module
              (memory (export "memory") 2)
              (func (export "plugin_alloc") (param i32) (result i32) (i32.const 65536))
              (func (export "plugin_free") (param i32 i32))
              (func (export "authorize") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))
            """), ct);
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance, PluginLimits.Default with { Timeout = TimeSpan.FromSeconds(60), Fuel = long.MaxValue / 2 });
        await using var proplet = new Proplet(plugins);

        proplet.Runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "s1", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, proplet_id = "me" }));
        await Task.Delay(300, ct);
        proplet.Runner.HandleStop(JsonSerializer.SerializeToUtf8Bytes(new { id = "s1" }));

        var result = await proplet.Published.NextAsync(Topics.Results, ct).WaitAsync(TimeSpan.FromSeconds(20), ct);
        result.GetProperty("task_id").GetString().ShouldBe("s1");
        result.GetProperty("error").GetString().ShouldBe("Task s1 was stopped before completion");
        proplet.Runner.Started.ShouldBe(0);
    }

    /// <summary>
    /// A start of a later dispatch of its attempt while the earlier dispatch's start is still with the plugins (the task
    /// dispatched back here: the proplet had been taken for gone) makes that admission the later dispatch, as it does a
    /// running task: the stop of the earlier dispatch, arriving after it, spares it, it is reported and run as the later
    /// dispatch, and its result names it. Before, the later start was dropped as a duplicate, the stop cancelled the
    /// admission, and the manager ignored the stopped result of the earlier dispatch: the task waited for the next report.
    /// </summary>
    [Fact]
    public async Task ALaterDispatchArrivingWhileThePluginsDecide_IsAdmittedAsThatDispatch()
    {
        var ct = TestContext.Current.CancellationToken;
        await File.WriteAllBytesAsync(Path.Combine(_dir.FullName, "10-slow.wasm"), Wat.ToWasm($$"""
            (module
              (memory (export "memory") 2)
              (data (i32.const 1024) "{\"allow\":true}")
              (func (export "plugin_alloc") (param i32) (result i32) (i32.const 65536))
              (func (export "plugin_free") (param i32 i32))
              (func (export "authorize") (param i32 i32) (result i64) (local $i i32)
                (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 100000000))))
                (i64.const {{(1024L << 32) | 14}})))
            """), ct);
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance, PluginLimits.Default with { Timeout = TimeSpan.FromSeconds(60), Fuel = long.MaxValue / 2 });
        await using var proplet = new Proplet(plugins);
        byte[] Start(int dispatch) => JsonSerializer.SerializeToUtf8Bytes(new { id = "back", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, attempt = 1, dispatch });

        proplet.Runner.HandleStart(Start(1));
        proplet.Runner.HandleStart(Start(2));
        proplet.Runner.HandleStop("""{"id":"back","broadcast":false,"attempt":1,"dispatch":1}"""u8.ToArray());
        proplet.Runner.Held().ShouldBe([new HeldTask("back", 1, 2)]);

        var result = await proplet.Published.NextAsync(Topics.Results, ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        (result.GetProperty("results").GetString(), result.GetProperty("dispatch").GetInt32()).ShouldBe(("3", 2), result.ToString());
        proplet.Runner.Started.ShouldBe(1);
    }

    /// <summary>
    /// A start delivered again while its run goes on (the same attempt and dispatch: a QoS redelivery) is dropped as a
    /// duplicate before the plugins, as without them: they decided on the task when it was admitted. Before, they were
    /// asked again, and a deny of the copy (here: the plugin allows once) sent an error result for the live run, which
    /// the manager took as the task's end, and recorded the run as finished.
    /// </summary>
    [Fact]
    public async Task GivenARunningTask_WhenItsStartIsDeliveredAgain_ThenThePluginsAreNotAskedAgain_AndTheRunGoesOn()
    {
        var ct = TestContext.Current.CancellationToken;
        await File.WriteAllBytesAsync(Path.Combine(_dir.FullName, "10-once.wasm"), Wat.ToWasm($$"""
            (module
              (memory (export "memory") 2)
              (global $calls (mut i32) (i32.const 0))
              (data (i32.const 1024) "{\"allow\":true}")
              (data (i32.const 2048) "{\"allow\":false,\"reason\":\"asked again\"}")
              (func (export "plugin_alloc") (param i32) (result i32) (i32.const 65536))
              (func (export "plugin_free") (param i32 i32))
              (func (export "authorize") (param i32 i32) (result i64)
                (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                (if (result i64) (i32.eq (global.get $calls) (i32.const 1))
                  (then (i64.const {{(1024L << 32) | 14}}))
                  (else (i64.const {{(2048L << 32) | 38}})))))
            """), ct);
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance);
        await using var proplet = new Proplet(plugins);
        var sleeper = Convert.ToBase64String(Modules.Sleeps(TimeSpan.FromSeconds(2), forever: false));
        var start = JsonSerializer.SerializeToUtf8Bytes(new { id = "dup", name = "_start", file = sleeper, attempt = 1, dispatch = 1 });

        proplet.Runner.HandleStart(start);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (proplet.Runner.Started == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, ct);
        }

        proplet.Runner.Started.ShouldBe(1);
        proplet.Runner.HandleStart(start);
        proplet.Runner.Held().ShouldBe([new HeldTask("dup", 1, 1)]);

        var result = await proplet.Published.NextAsync(Topics.Results, ct);
        result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null, result.ToString());
        await proplet.Runner.DisposeAsync(); // waits for anything the copy set going
        while (proplet.Published.TryNext(out var other))
        {
            other.Path.ShouldNotBe(Topics.Results, other.Payload.ToString());
        }

        plugins.Plugins.All.Single().Counters.Calls.ShouldBe(1);
    }

    /// <summary>A start that arrives once the proplet is shutting down (its runner disposed, the broker connection still
    /// up) is dropped with a log line: not run on released resources, no made-up error result.</summary>
    [Fact]
    public async Task AStartDuringShutdown_IsDropped()
    {
        await using var proplet = new Proplet();
        await proplet.Runner.DisposeAsync();

        proplet.Runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "late", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, proplet_id = "me" }));

        await Task.Delay(300, TestContext.Current.CancellationToken);
        proplet.Runner.Started.ShouldBe(0);
        proplet.Published.TryNext(out _).ShouldBeFalse();
    }

    /// <summary>plugin.wat with <paramref name="prelude"/> at the start of authorize and <paramref name="complete"/> as on-task-complete.</summary>
    private void ComponentPlugin(string name, string prelude = "", string complete = "") =>
        File.WriteAllBytes(Path.Combine(_dir.FullName, name + ".wasm"), Components.Plugin(prelude, complete));

    private static PropletTaskInfo Info(bool daemon = false) => new()
    {
        Id = "t",
        Name = "main",
        CliArgs = ["--x"],
        Env = new Dictionary<string, string> { ["A"] = "1" },
        Daemon = daemon,
    };

    [Fact]
    public async Task AComponentPlugin_AuthorizesEnrichesAndDeniesWithItsReason()
    {
        ComponentPlugin("10-component");
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance);
        var ct = TestContext.Current.CancellationToken;

        plugins.Components.Count.ShouldBe(1);
        (await plugins.AuthorizeAsync(Info(), ct)).ShouldBe((true, null));
        (await plugins.AuthorizeAsync(Info(daemon: true), ct)).ShouldBe((false, "daemons are not allowed here"));
        (await plugins.EnrichAsync(Info(), ct)).ShouldBe(new Dictionary<string, string> { ["PLUGIN"] = "component" });
        plugins.OnTaskStart(Info());
        plugins.OnTaskComplete("t", true, "42", null);

        var result = await RunAsync(plugins, new { id = "d1", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, daemon = true });
        result.GetProperty("error").GetString().ShouldBe("daemons are not allowed here");
    }

    /// <summary>In file-name order whatever PROPLET_PLUGIN_DIR's spelling: before, a relative one put every component
    /// before every core module (they were ordered by path, core modules' absolute, components' as configured).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ComponentAndCorePlugins_RunInFileNameOrder(bool relativeDirectory)
    {
        Plugin("10-deny", ("authorize", """{"allow":false,"reason":"core first"}"""));
        ComponentPlugin("20-component");
        var directory = relativeDirectory ? Path.GetRelativePath(Environment.CurrentDirectory, _dir.FullName) : _dir.FullName;
        using var plugins = PropletPluginChain.Load(directory, NullLogger.Instance);

        (await plugins.AuthorizeAsync(Info(daemon: true), TestContext.Current.CancellationToken)).ShouldBe((false, "core first"));
    }

    [Fact]
    public async Task ATrappingOrSpinningComponentPlugin_DeniesWithTheReason_AndTheProcessLives()
    {
        ComponentPlugin("10-trap", "(unreachable)");
        ComponentPlugin("20-spin", "(loop $l (br $l))");
        var ct = TestContext.Current.CancellationToken;
        using (var trapping = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance))
        {
            (await trapping.AuthorizeAsync(Info(), ct)).ShouldBe((false, "plugin error: 10-trap authorize: wasm trap: unreachable"));
        }

        File.Delete(Path.Combine(_dir.FullName, "10-trap.wasm"));
        using var spinning = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance, PluginLimits.Default with { Timeout = TimeSpan.FromMilliseconds(200), Fuel = long.MaxValue / 2 });
        (await spinning.AuthorizeAsync(Info(), ct)).ShouldBe((false, "plugin error: 20-spin authorize: time limit of 0.2 s exceeded"));
        using var fuelLimited = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance, PluginLimits.Default with { Fuel = 100_000 });
        (await fuelLimited.AuthorizeAsync(Info(), ct)).ShouldBe((false, "plugin error: 20-spin authorize: fuel limit of 100000 exhausted"));
    }

    /// <summary>A component plugin whose authorize sleeps 20 s in WASI preview 2 (subscribe-duration, pollable.block).</summary>
    private const string SleepyComponent = $$"""
        (component $sleepy
          (import "wasi:io/poll@0.2.0" (instance $poll
            (export "pollable" (type $pollable (sub resource)))
            (export "[method]pollable.block" (func (param "self" (borrow $pollable))))))
          (alias export $poll "pollable" (type $pollable))
          (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
            (alias outer $sleepy $pollable (type $p0))
            (export "pollable" (type $p (eq $p0)))
            (export "subscribe-duration" (func (param "when" u64) (result (own $p))))))
          (core func $subscribe (canon lower (func $clock "subscribe-duration")))
          (core func $block (canon lower (func $poll "[method]pollable.block")))
          (core instance $host (export "subscribe" (func $subscribe)) (export "block" (func $block)))
          (core module $m
            (import "host" "subscribe" (func $subscribe (param i64) (result i32)))
            (import "host" "block" (func $block (param i32)))
            (memory (export "memory") 1)
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
            (func (export "authorize") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
              (call $block (call $subscribe (i64.const 20000000000)))
              (i32.store8 (i32.const 64) (i32.const 1))
              (i32.store8 (i32.const 68) (i32.const 0))
              (i32.const 64)))
          (core instance $i (instantiate $m (with "host" (instance $host))))
          (alias core export $i "memory" (core memory $mem))
          (alias core export $i "cabi_realloc" (core func $realloc))
          {{Components.TaskInfo}}
          (type $authorize-response-def (record (field "allow" bool) (field "reason" (option string))))
          (export $authorize-response "authorize-response" (type $authorize-response-def))
          (func $authorize (param "task" $task-info) (result $authorize-response)
            (canon lift (core func $i "authorize") (memory $mem) (realloc $realloc)))
          (instance $lifecycle
            (export "task-info" (type $task-info))
            (export "authorize-response" (type $authorize-response))
            (export "authorize" (func $authorize)))
          (export "propeller:proplet-plugin/lifecycle@0.1.0" (instance $lifecycle)))
        """;

    /// <summary>
    /// A component plugin asleep in a host call (WASI preview 2's pollable.block, which no epoch check reaches) is given
    /// up at its time limit, with the time limit's deny, and at a stop; past <see cref="Propeller.Plugins.Proplet.ComponentPlugin.MaxBlocked"/>
    /// calls still asleep, its calls fail at once. Before, the admission waited out the whole sleep, a stop included.
    /// </summary>
    [Fact]
    public async Task AComponentPluginAsleepInAHostCall_IsGivenUpAtItsTimeLimitOrAStop()
    {
        var ct = TestContext.Current.CancellationToken;
        await File.WriteAllBytesAsync(Path.Combine(_dir.FullName, "10-sleepy.wasm"), Components.FromText(SleepyComponent), ct);
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance, PluginLimits.Default with { Timeout = TimeSpan.FromMilliseconds(200) });
        plugins.Components.Count.ShouldBe(1);

        for (var i = 0; i < Propeller.Plugins.Proplet.ComponentPlugin.MaxBlocked; i++)
        {
            (await plugins.AuthorizeAsync(Info(), ct).AsTask().WaitAsync(TimeSpan.FromSeconds(15), ct))
                .ShouldBe((false, "plugin error: 10-sleepy authorize: time limit of 0.2 s exceeded"));
        }

        (await plugins.AuthorizeAsync(Info(), ct)).ShouldBe((false, $"plugin error: 10-sleepy authorize: {Propeller.Plugins.Proplet.ComponentPlugin.MaxBlocked} earlier calls are still blocked past the time limit"));

        using var patient = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance, PluginLimits.Default with { Timeout = TimeSpan.FromSeconds(60) });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        stop.CancelAfter(TimeSpan.FromMilliseconds(300));
        await Should.ThrowAsync<OperationCanceledException>(() => patient.AuthorizeAsync(Info(), stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(15), ct));
    }

    [Fact]
    public void AComponentThatIsNoPlugin_IsSkipped()
    {
        File.WriteAllBytes(Path.Combine(_dir.FullName, "10-calculator.wasm"), Components.Calculator);
        using var plugins = PropletPluginChain.Load(_dir.FullName, NullLogger.Instance);

        plugins.Components.ShouldBeEmpty();
        plugins.Any.ShouldBeFalse();
    }

    /// <summary>A daemon's on_task_complete comes with its "started" result, as the original's (its start_app returns at
    /// once): before, a daemon's never came.</summary>
    [Fact]
    public async Task ADaemon_NotifiesItsCompletionWhenItStarts()
    {
        await File.WriteAllBytesAsync(Path.Combine(_dir.FullName, "10-core.wasm"), Wat.ToWasm("""
            (module
              (memory (export "memory") 2)
              (func (export "plugin_alloc") (param i32) (result i32) (i32.const 65536))
              (func (export "plugin_free") (param i32 i32))
              (func (export "on_task_complete") (param i32 i32) (result i64) unreachable))
            """), TestContext.Current.CancellationToken);
        var logger = new Lines();
        using var plugins = PropletPluginChain.Load(_dir.FullName, logger);

        await using var proplet = new Proplet(plugins);
        proplet.Runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "d1", name = "main", file = Convert.ToBase64String(Modules.Spin), daemon = true }));
        (await proplet.Published.NextAsync(Topics.Results, TestContext.Current.CancellationToken)).GetProperty("running").GetBoolean().ShouldBeTrue();
        (await plugins.DrainAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).ShouldBeTrue();

        logger.Entries.ShouldContain(line => line.Contains("on_task_complete failed", StringComparison.Ordinal), string.Join("\n", logger.Entries));
        proplet.Runner.HandleStop("""{"id":"d1"}"""u8.ToArray());
    }

    /// <summary>The drain waits for a component's notification still running (its native objects are disposed after);
    /// a notification after the drain is dropped and logged.</summary>
    [Fact]
    public async Task TheDrain_WaitsForComponentNotifications_AndLaterOnesAreDropped()
    {
        ComponentPlugin("10-component", complete: "(loop $l (br $l))");
        var logger = new Lines();
        var plugins = PropletPluginChain.Load(_dir.FullName, logger, PluginLimits.Default with { Timeout = TimeSpan.FromMilliseconds(300), Fuel = long.MaxValue / 2 });

        plugins.OnTaskComplete("t", true, "42", null);
        (await plugins.DrainAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).ShouldBeTrue();

        logger.Entries.ShouldContain(line => line.Contains("Component plugin call failed: 10-component on-task-complete: time limit", StringComparison.Ordinal));
        plugins.OnTaskStart(Info());
        logger.Entries.ShouldContain(line => line.Contains("Dropped an on-task-start notification", StringComparison.Ordinal));
        plugins.Dispose();
    }

    /// <summary>Keeps the formatted log lines.</summary>
    private sealed class Lines : Microsoft.Extensions.Logging.ILogger
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Enqueue(formatter(state, exception));
    }
}
