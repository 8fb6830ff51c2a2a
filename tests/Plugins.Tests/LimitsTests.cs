using Propeller.Application.Plugins;
using Propeller.Plugins.Tests.Support;

namespace Propeller.Plugins.Tests;

/// <summary>Misbehaving plugins are denied with a reason, counted, and the host keeps answering.</summary>
public sealed class LimitsTests : IDisposable
{
    private static readonly PluginTaskInfo Task = new() { Id = "t", Name = "job" };
    private static readonly PluginAuthContext Start = new("alice", PluginAction.Start);
    private readonly PluginDir _dir = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<string, string, string?, string> Misbehaving => new()
    {
        { "loop-fuel", "(func (export \"authorize\") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))", null, "out of fuel (limit 10000000)" },
        { "loop-time", "(func (export \"authorize\") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))", """{"limits":{"fuel":1000000000000000,"timeout_ms":100}}""", "timed out after 100 ms" },
        { "grow", "(func (export \"authorize\") (param i32 i32) (result i64) (loop $l (drop (memory.grow (i32.const 16))) (br $l)) (i64.const 0))", """{"limits":{"memory_mb":4}}""", "memory limit of 4 MiB exceeded" },
        { "trap", "(func (export \"authorize\") (param i32 i32) (result i64) unreachable)", null, "wasm trap: unreachable" },
        { "garbage", Wat.Answer("authorize", "this is not json"), null, "malformed JSON answer" },
        { "wrong-type", Wat.Answer("authorize", """{"allow":"yes"}"""), null, "\"allow\" must be a boolean" },
        { "array", Wat.Answer("authorize", "[true]"), null, "expected a JSON object, got Array" },
        { "lone-surrogate", Wat.Answer("authorize", """{"allow":true,"reason":"\ud800"}"""), null, "malformed JSON answer" },
        { "lone-surrogate-key", Wat.Answer("authorize", """{"\udc00":1,"allow":true}"""), null, "malformed JSON answer" },
        { "invalid-utf8", Wat.Answer("authorize", [.. "{\"allow\":true,\"reason\":\""u8, 0xff, 0xfe, .. "\"}"u8]), null, "malformed JSON answer" },
        { "beyond", "(func (export \"authorize\") (param i32 i32) (result i64) (i64.const " + Wat.Packed(0x7fff0000, 100) + "))", null, "is beyond memory" },
        { "recurse", "(func $f (export \"authorize\") (param i32 i32) (result i64) (call $f (local.get 0) (local.get 1)))", """{"limits":{"fuel":1000000000000000}}""", "wasm trap: call stack exhausted" },
    };

    [Theory]
    [MemberData(nameof(Misbehaving))]
    public async Task MisbehavingPlugin_IsDeniedWithAReason_AndTheHostStaysHealthy(string name, string hook, string? manifest, string reason)
    {
        _dir.Add(name, Wat.Plugin(hook), manifest);
        _dir.Add("zz-good", Wat.Plugin(Wat.Answer("authorize", """{"allow":true}""")));
        var gate = _dir.Gate();
        for (var i = 0; i < 2; i++)
        {
            var outcome = await gate.AuthorizeAsync(Start, Task, Ct);
            outcome.Allowed.ShouldBeFalse();
            outcome.Reason!.ShouldStartWith($"plugin {name} authorize: ");
            outcome.Reason.ShouldContain(reason);
            outcome.Decisions.Single().Allowed.ShouldBeFalse();
        }

        var catalog = _dir.Catalog();
        var plugin = catalog.Current.Find(name)!;
        plugin.Counters.Failures.ShouldBe(2);
        plugin.Counters.Denies.ShouldBe(2);

        // The host is unaffected: with the bad plugin removed and the same catalog reloaded, the same gate allows.
        File.Delete(Path.Combine(_dir.Path, name + ".wasm"));
        catalog.Reload(Ct).All.Select(p => p.Name).ShouldBe(["zz-good"]);
        var after = await gate.AuthorizeAsync(Start, Task, Ct);
        after.Allowed.ShouldBeTrue();
        after.Decisions.Single().Plugin.ShouldBe("zz-good");
    }

    /// <summary>
    /// A memory cap close to the module's own memory (1 MiB for 128 KiB, 2 MiB for 1.125 MiB) does not turn every failure
    /// into a memory limit: the memory never grew, so the call ran out of fuel or trapped. Before, a memory within 1 MiB of
    /// the cap was taken as "ran into it", and the deny, the decision and the metric said "memory limit of N MiB exceeded".
    /// </summary>
    [Theory]
    [InlineData(1, 2, "(loop $l (br $l))", "out of fuel (limit 10000000)")]
    [InlineData(2, 18, "(loop $l (br $l))", "out of fuel (limit 10000000)")]
    [InlineData(1, 2, "unreachable", "wasm trap: unreachable")]
    public async Task GivenAMemoryCapCloseToTheModulesMemory_WhenTheCallFailsWithoutGrowing_ThenItsFailureIsReportedNotTheMemoryLimit(int memoryMb, int pages, string body, string reason)
    {
        _dir.Add("small", Wat.Plugin($"(func (export \"authorize\") (param i32 i32) (result i64) {body} (i64.const 0))", pages: pages), $$"""{"limits":{"memory_mb":{{memoryMb}} } }""");

        var outcome = await _dir.Gate().AuthorizeAsync(Start, Task, Ct);

        outcome.Allowed.ShouldBeFalse();
        outcome.Reason!.ShouldContain(reason);
        outcome.Reason!.ShouldNotContain("memory limit");
    }

    /// <summary>
    /// A pooled instance that an earlier call grew to the cap, then refused a grow in the next call (which traps), ran into
    /// the memory limit and says so: the call itself grew nothing, and was reported as a plain trap.
    /// </summary>
    [Fact]
    public async Task GivenAnInstanceGrownToTheCapByAnEarlierCall_WhenTheNextCallIsRefusedAGrow_ThenItsFailureIsTheMemoryLimit()
    {
        _dir.Add("grow", Wat.Plugin(
            """
            (global $calls (mut i32) (i32.const 0))
            (data (i32.const 1024) "{\"allow\":true}")
            (func (export "authorize") (param i32 i32) (result i64)
              (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
              (if (i32.eq (global.get $calls) (i32.const 1))
                (then (drop (memory.grow (i32.const 29))) (return (i64.const 4398046511118))))
              (if (i32.eq (memory.grow (i32.const 2)) (i32.const -1)) (then unreachable))
              (i64.const 4398046511118))
            """), """{"limits":{"memory_mb":2}}""");
        _dir.Catalog(configure: o => o.MaxInstancesPerPlugin = 1);
        var gate = _dir.Gate();

        (await gate.AuthorizeAsync(Start, Task, Ct)).Allowed.ShouldBeTrue(); // memory 31 of 32 pages
        var outcome = await gate.AuthorizeAsync(Start, Task, Ct);

        outcome.Allowed.ShouldBeFalse();
        outcome.Reason!.ShouldContain("memory limit of 2 MiB exceeded");
    }

    /// <summary>The memory limit is the plugin's total: a plugin with four memories could grow each to the limit (four
    /// 3.75 MiB grows under 4 MiB). It is skipped at load (its trial instantiation fails), with the reason.</summary>
    [Fact]
    public async Task APluginWithSeveralMemories_IsSkipped_SoTheMemoryLimitIsItsTotal()
    {
        // Wasmtime's own text parser: wat2wasm needs a flag for several memories.
        var answer = Wat.Packed(1024, 14);
        _dir.AddBytes("memories", Wasmtime.Module.ConvertText(Wat.Plugin($$"""
            (memory $b 1) (memory $c 1) (memory $d 1)
            (func (export "authorize") (param i32 i32) (result i64)
              (if (i32.eq (memory.grow $b (i32.const 60)) (i32.const -1)) (then unreachable))
              (if (i32.eq (memory.grow $c (i32.const 60)) (i32.const -1)) (then unreachable))
              (if (i32.eq (memory.grow $d (i32.const 60)) (i32.const -1)) (then unreachable))
              (i64.const {{answer}}))
            (data (i32.const 1024) "{\"allow\":true}")
            """)), """{"limits":{"memory_mb":4}}""");

        var catalog = _dir.Catalog();

        catalog.Current.Find("memories").ShouldBeNull();
        _dir.Log.Lines.ShouldContain(line => line.Contains("Plugin memories", StringComparison.Ordinal) && line.Contains("skipped: resource limit exceeded: memory count too high at 4", StringComparison.Ordinal));
    }

    [Fact]
    public async Task CallerCancellation_StopsALoopingPlugin()
    {
        _dir.Add("loop", Wat.Plugin("(func (export \"authorize\") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"), """{"limits":{"fuel":1000000000000000,"timeout_ms":60000}}""");
        var gate = _dir.Gate();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(TimeSpan.FromMilliseconds(50));
        await Should.ThrowAsync<OperationCanceledException>(async () => await gate.AuthorizeAsync(Start, Task, cts.Token));
    }

    /// <summary>A plugin "slow-notify" whose authorize allows and whose on_task_complete sleeps 15 s (WASI poll_oneoff).
    /// Just before it sleeps, on_task_complete calls queue.enqueue, which a plugin without the queue capability is refused
    /// (counted in <see cref="Propeller.Plugins.Runtime.PluginCounters.JobsRejected"/>): the test's signal that a notification holds its instance
    /// (<see cref="AsleepAsync"/>).</summary>
    private void AddSlowNotifier() => _dir.Add("slow-notify", Wat.Plugin(
        Wat.Answer("authorize", """{"allow":true}""") + """
        (func (export "on_task_complete") (param i32 i32)
          (drop (call $enqueue (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
          (i64.store (i32.const 30000) (i64.const 7))
          (i32.store8 (i32.const 30008) (i32.const 0))
          (i32.store (i32.const 30016) (i32.const 1))
          (i64.store (i32.const 30024) (i64.const 15000000000))
          (i64.store (i32.const 30032) (i64.const 0))
          (i32.store16 (i32.const 30040) (i32.const 0))
          (drop (call $poll (i32.const 30000) (i32.const 31000) (i32.const 1) (i32.const 32000))))
        """,
        imports: """
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (import "queue" "enqueue" (func $enqueue (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
            """), """{"limits":{"timeout_ms":60000}}""");

    /// <summary>Waits until <paramref name="count"/> on_task_complete calls of "slow-notify" have reached their sleep
    /// (<see cref="AddSlowNotifier"/>; within 30 s: the first call instantiates the module).</summary>
    private async Task AsleepAsync(int count)
    {
        var counters = _dir.Catalog().Current.Find("slow-notify").ShouldNotBeNull().Counters;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (counters.JobsRejected < count)
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, $"{counters.JobsRejected} of {count} notifications asleep");
            await System.Threading.Tasks.Task.Delay(10, Ct);
        }
    }

    /// <summary>
    /// Slow notifications hold at most half of a plugin's instance slots, so a hook someone waits for is not queued
    /// behind them: two on_task_complete calls sleeping 15 s held both slots (of 2), and authorize waited for them.
    /// </summary>
    [Fact]
    public async Task SlowNotifications_LeaveSlotsForTheHooksSomeoneWaitsFor()
    {
        AddSlowNotifier();
        _dir.Catalog(configure: o => o.MaxInstancesPerPlugin = 2);
        var gate = _dir.Gate();
        gate.OnTaskCompleted(Task, success: true, error: null);
        gate.OnTaskCompleted(Task, success: true, error: null);
        await AsleepAsync(1); // one asleep in the plugin, holding its slot; the other asleep too or waiting for its share

        (await gate.AuthorizeAsync(Start, Task, Ct)).Allowed.ShouldBeTrue();

        // Answered while both notifications are still pending (they sleep 15 s): authorize that waited for a slot would
        // have been answered only once one of them had ended.
        gate.PendingNotifications.ShouldBe(2, "authorize waited for the sleeping notifications");
        await gate.DrainAsync(Ct);
    }

    /// <summary>
    /// With one instance per plugin configured, a slow notification does not take the only instance: a plugin with
    /// notification hooks gets a second one, the notifications' (at most half, at least one, of at least two), so
    /// authorize answers while an on_task_complete still sleeps (15 s). Before, both had the one slot: authorize waited
    /// for the notification's end.
    /// </summary>
    [Fact]
    public async Task GivenOneInstancePerPlugin_WhenANotificationSleeps_ThenAuthorizeDoesNotWaitForIt()
    {
        AddSlowNotifier();
        _dir.Catalog(configure: o => o.MaxInstancesPerPlugin = 1);
        var gate = _dir.Gate();
        gate.OnTaskCompleted(Task, success: true, error: null);
        await AsleepAsync(1); // the notification asleep in the plugin, holding its instance

        (await gate.AuthorizeAsync(Start, Task, Ct)).Allowed.ShouldBeTrue();
        var drained = gate.DrainAsync(Ct);

        drained.IsCompleted.ShouldBeFalse("authorize waited for the sleeping notification");
        await drained;
    }

    /// <summary>
    /// A plugin that sleeps (WASI <c>poll_oneoff</c>, where Rust's and C's sleeps go) is held to its time limit and to its
    /// caller's cancellation: the epoch check runs only while guest code runs, so a 30 s sleep in Wasmtime's own
    /// <c>poll_oneoff</c> held the call for 30 s whatever its <c>timeout_ms</c>.
    /// </summary>
    [Fact]
    public async Task ASleepingPlugin_IsHeldToItsTimeLimit_AndToItsCallersCancellation()
    {
        const string sleeping = """
            (module
              (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 2)
              (func (export "plugin_alloc") (param i32) (result i32) (i32.const 65536))
              (func (export "plugin_free") (param i32 i32))
              (func (export "authorize") (param i32 i32) (result i64)
                (i64.store (i32.const 1024) (i64.const 7))
                (i32.store8 (i32.const 1032) (i32.const 0))
                (i32.store (i32.const 1040) (i32.const 1))
                (i64.store (i32.const 1048) (i64.const 30000000000))
                (i64.store (i32.const 1056) (i64.const 0))
                (i32.store16 (i32.const 1064) (i32.const 0))
                (drop (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 4096)))
                (i64.const 0)))
            """;
        _dir.Add("sleep", sleeping, """{"limits":{"timeout_ms":100}}""");
        using var patient = new PluginDir();
        patient.Add("sleep", sleeping, """{"limits":{"timeout_ms":60000}}""");

        var outcome = await System.Threading.Tasks.Task.Run(() => _dir.Gate().AuthorizeAsync(Start, Task, Ct).AsTask(), Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason!.ShouldContain("timed out after 100 ms");

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(TimeSpan.FromMilliseconds(50));
        var cancelled = System.Threading.Tasks.Task.Run(() => patient.Gate().AuthorizeAsync(Start, Task, cts.Token).AsTask(), Ct);
        await Should.ThrowAsync<OperationCanceledException>(() => cancelled.WaitAsync(TimeSpan.FromSeconds(10), Ct));
    }

    /// <summary>
    /// A module's start function runs when an instance is made (the trial instance at load, every new pooled or job
    /// instance): it is held to the plugin's time limit like a hook, so a start that sleeps for ever (poll_oneoff for
    /// ~30 years) does not hang the manager's start-up or a reload. The plugin stays loaded without a ready instance, and
    /// its calls fail closed: each makes an instance, whose start times out, and authorize denies. Before, it was skipped
    /// at load, and the chain without it allowed everything.
    /// </summary>
    [Fact]
    public async Task APluginWhoseStartSleepsForEver_StaysLoaded_AndItsAuthorizeDeniesWithATimeout()
    {
        _dir.Add("sleepy-start", SleepyStart(), """{"limits":{"timeout_ms":200}}""");
        _dir.Add("zz-good", Wat.Plugin(Wat.Answer("authorize", """{"allow":true}""")));

        // Generous: without the limit the load never returns, and the test fails here instead of hanging.
        var set = await System.Threading.Tasks.Task.Run(() => _dir.Catalog().Current, Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);

        set.Skipped.ShouldBeEmpty();
        set.Find("sleepy-start").ShouldNotBeNull();
        _dir.Log.Lines.ShouldContain(l => l.StartsWith("Warning: Plugin sleepy-start: its start function ran past 200 ms at load", StringComparison.Ordinal));
        var outcome = await System.Threading.Tasks.Task.Run(() => _dir.Gate().AuthorizeAsync(Start, Task, Ct).AsTask(), Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("plugin sleepy-start authorize: start function timed out after 200 ms");

        // The next call does not run the start function again for its whole time limit: denied at once (before, every
        // call waited timeout_ms, up to a day, holding a slot and a store), until the retry interval has passed.
        var again = await System.Threading.Tasks.Task.Run(() => _dir.Gate().AuthorizeAsync(Start, Task, Ct).AsTask(), Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        again.Allowed.ShouldBeFalse();
        again.Reason!.ShouldContain("it is tried again 30 s after");
    }

    /// <summary>A module whose start function sleeps <paramref name="nanoseconds"/> (by default ~30 years), with the ABI and
    /// an authorize that answers <paramref name="answer"/>.</summary>
    internal static string SleepyStart(long nanoseconds = 1000000000000000000, string answer = """{"allow":true}""") => $$"""
        (module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 2)
          (func (export "plugin_alloc") (param i32) (result i32) (i32.const 65536))
          (func (export "plugin_free") (param i32 i32))
          (data (i32.const 3000) "{{answer.Replace("\"", "\\\"", StringComparison.Ordinal)}}")
          (func (export "authorize") (param i32 i32) (result i64) (i64.const {{(3000L << 32) | (long)System.Text.Encoding.UTF8.GetByteCount(answer)}}))
          (func $start
            (i64.store (i32.const 1024) (i64.const 7))
            (i32.store8 (i32.const 1032) (i32.const 0))
            (i32.store (i32.const 1040) (i32.const 1))
            (i64.store (i32.const 1048) (i64.const {{nanoseconds}}))
            (i64.store (i32.const 1056) (i64.const 0))
            (i32.store16 (i32.const 1064) (i32.const 0))
            (drop (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 4096))))
          (start $start))
        """;

    /// <summary>
    /// A load holds a start function to the host's load limit when the plugin's own time limit is longer (timeout_ms up to
    /// a day), so a sleeping start function does not hold the manager's start-up, or every reload, for up to a day. The
    /// plugin stays loaded without a ready instance, and a call makes one under the plugin's own limits: an authorize
    /// whose start takes 1 s of its 5 s answers (here a deny). Before, the plugin was skipped at start-up, and the chain
    /// without it allowed every command until a reload; a reload kept the old version instead of loading the new one.
    /// </summary>
    [Fact]
    public async Task GivenAStartFunctionSlowerThanTheLoadLimit_WhenLoadedOrReloaded_ThenThePluginStays_AndItsCallsRunUnderItsOwnLimits()
    {
        const string patient = """{"limits":{"timeout_ms":5000}}""";
        _dir.Add("auth", SleepyStart(1_000_000_000, """{"allow":false,"reason":"slow start"}"""), patient);

        // Generous: without the load limit the load takes the start function's time, and the test fails here instead.
        var catalog = await System.Threading.Tasks.Task.Run(() => _dir.Catalog(configure: o => o.LoadTimeout = TimeSpan.FromMilliseconds(300)), Ct)
            .WaitAsync(TimeSpan.FromSeconds(30), Ct);
        catalog.Current.Skipped.ShouldBeEmpty();
        var first = catalog.Current.Find("auth").ShouldNotBeNull();
        _dir.Log.Lines.ShouldContain(l => l.StartsWith("Warning: Plugin auth: its start function ran past 300 ms at load", StringComparison.Ordinal));
        var outcome = await _dir.Gate().AuthorizeAsync(Start, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("slow start");

        _dir.Add("auth", SleepyStart(1_000_000_000, """{"allow":false,"reason":"new version"}"""), patient);
        var next = await System.Threading.Tasks.Task.Run(() => catalog.Reload(Ct), Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);

        next.Kept.ShouldBeEmpty();
        next.Find("auth")!.Hash.ShouldNotBe(first.Hash);
        (await _dir.Gate().AuthorizeAsync(Start, Task, Ct)).Reason.ShouldBe("new version");
    }

    /// <summary>
    /// A drain ended by the host's stop token (which at shutdown usually fires before the drain timeout) does not throw
    /// out of the host's stop, and logs the notifications still running. Before, the cancellation escaped and the
    /// warning was never written.
    /// </summary>
    [Fact]
    public async Task GivenANotificationRunning_WhenTheDrainIsCancelled_ThenItReturnsAndLogsTheWarning()
    {
        _dir.Add("spin-notify", Wat.Plugin("""(func (export "on_task_complete") (param i32 i32) (loop $l (br $l)))"""), """{"limits":{"fuel":1000000000000000,"timeout_ms":2000}}""");
        var gate = _dir.Gate();
        gate.OnTaskCompleted(Task, success: true, error: null);
        using var stopping = new CancellationTokenSource();
        await stopping.CancelAsync();

        await Should.NotThrowAsync(() => gate.DrainAsync(stopping.Token));

        _dir.GateLog.Lines.ShouldContain(l => l.StartsWith("Warning: Shutdown: 1 plugin notifications still running", StringComparison.Ordinal));
        await gate.DrainAsync(Ct); // the spin ends at its time limit
    }

    [Fact]
    public async Task ConcurrentCalls_NeverShareAnInstance()
    {
        // The hook marks its instance busy, works a while, and denies if it ever finds the mark already set.
        _dir.Add("busy", Wat.Plugin(
            Wat.Answer("unused", "{}") + """
            (global $busy (mut i32) (i32.const 0))
            (global $calls (mut i32) (i32.const 0))
            (data (i32.const 30000) "{\"allow\":true}")
            (data (i32.const 30100) "{\"allow\":false,\"reason\":\"shared\"}")
            (func (export "authorize") (param i32 i32) (result i64) (local $i i32)
              (if (global.get $busy) (then (return (i64.const 129278515609633))))
              (global.set $busy (i32.const 1))
              (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
              (local.set $i (i32.const 200000))
              (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))
              (global.set $busy (i32.const 0))
              (i64.const 128849018880014))
            """));
        var gate = _dir.Gate();
        var calls = Enumerable.Range(0, 32).Select(_ => System.Threading.Tasks.Task.Run(async () => await gate.AuthorizeAsync(Start, Task, Ct), Ct));
        var outcomes = await System.Threading.Tasks.Task.WhenAll(calls);
        outcomes.ShouldAllBe(o => o.Allowed);
    }

    public void Dispose() => _dir.Dispose();
}
