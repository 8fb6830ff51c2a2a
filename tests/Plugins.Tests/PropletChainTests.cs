using Propeller.Plugins.Proplet;
using Propeller.Plugins.Tests.Support;
using Propeller.Tests.Shared;

namespace Propeller.Plugins.Tests;

public sealed class PropletChainTests : IDisposable
{
    private static readonly PropletTaskInfo Task = new() { Id = "t", Name = "n", Env = new Dictionary<string, string> { ["A"] = "req" } };
    private readonly string _dir = Directory.CreateTempSubdirectory("proplet-plugins").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private void Add(string name, string wat) => File.WriteAllBytes(Path.Combine(_dir, name + ".wasm"), Wat.ToWasm(wat));

    [Fact]
    public async Task Authorize_FirstDenyWins_TrapFailsClosed()
    {
        Add("a", Wat.Plugin(Wat.Answer("authorize", """{"allow":true}""")));
        Add("b", Wat.Plugin(Wat.Answer("authorize", """{"allow":false,"reason":"no"}""")));
        using (var chain = PropletPluginChain.Load(_dir, new ListLogger<PropletPluginChain>()))
        {
            (await chain.AuthorizeAsync(Task, Ct)).ShouldBe((false, "no"));
        }

        Add("0-trap", Wat.Plugin("(func (export \"authorize\") (param i32 i32) (result i64) unreachable)"));
        using var trapping = PropletPluginChain.Load(_dir, new ListLogger<PropletPluginChain>());
        var (allowed, reason) = await trapping.AuthorizeAsync(Task, Ct);
        allowed.ShouldBeFalse();
        reason!.ShouldStartWith("plugin error: 0-trap: wasm trap: unreachable");
    }

    [Fact]
    public async Task Enrich_LaterPluginsOverride_FailuresSkipped_NotificationsRun()
    {
        Add("a", Wat.Plugin(Wat.Answer("enrich", """{"env":{"A":"a","B":"a"}}""")));
        Add("b", Wat.Plugin(Wat.Answer("enrich_task", """{"env":{"B":"b"}}""") + """(func (export "on_task_start") (param i32 i32)) (func (export "on_task_complete") (param i32 i32))"""));
        Add("c", Wat.Plugin("(func (export \"enrich\") (param i32 i32) (result i64) unreachable)"));
        using var chain = PropletPluginChain.Load(_dir, new ListLogger<PropletPluginChain>());
        (await chain.EnrichAsync(Task, Ct)).ShouldBe(new Dictionary<string, string> { ["A"] = "a", ["B"] = "b" }, ignoreOrder: true);
        chain.OnTaskStart(Task);
        chain.OnTaskComplete("t", success: true, output: "42", error: null);
        (await chain.DrainAsync(TimeSpan.FromSeconds(30), Ct)).ShouldBeTrue();
        chain.Plugins.Find("b")!.Counters.Calls.ShouldBe(3);
    }

    [Fact]
    public async Task AnswersThatDoNotDecode_DenyAuthorize_AndAreSkippedInEnrich()
    {
        Add("a", Wat.Plugin(Wat.Answer("authorize", """{"allow":true,"reason":"\ud800"}""") + Wat.Answer("enrich", """{"env":{"A":"a"}}""")));
        Add("b", Wat.Plugin(Wat.Answer("enrich", [.. "{\"env\":{\"B\":\""u8, 0xff, .. "\"}}"u8])));
        using var chain = PropletPluginChain.Load(_dir, new ListLogger<PropletPluginChain>());
        var (allowed, reason) = await chain.AuthorizeAsync(Task, Ct);
        allowed.ShouldBeFalse();
        reason!.ShouldStartWith("plugin error: a: malformed JSON answer");
        (await chain.EnrichAsync(Task, Ct)).ShouldBe(new Dictionary<string, string> { ["A"] = "a" });
        chain.Plugins.Find("b")!.Counters.Failures.ShouldBe(1);
    }

    /// <summary>
    /// A component plugin whose enrich has another result type (u32, not enrich-response) would throw from the decoding
    /// of every answer, refusing the task as an internal error: it is skipped at load with the types named, and the
    /// other plugins' env applies (a well-typed component's and a core module's).
    /// </summary>
    [Fact]
    public async Task AComponentWhoseEnrichHasTheWrongType_IsSkipped_TheOtherPluginsEnrich()
    {
        await File.WriteAllBytesAsync(Path.Combine(_dir, "a-component.wasm"), Component("$enrich-response"), Ct);
        await File.WriteAllBytesAsync(Path.Combine(_dir, "b-wrong.wasm"), Component("u32"), Ct);
        Add("c-core", Wat.Plugin(Wat.Answer("enrich", """{"env":{"C":"c"}}""")));
        var log = new ListLogger<PropletPluginChain>();
        using var chain = PropletPluginChain.Load(_dir, log);

        (await chain.EnrichAsync(Task, Ct)).ShouldBe(new Dictionary<string, string> { ["PLUGIN"] = "component", ["C"] = "c" }, ignoreOrder: true);
        chain.Components.Select(c => c.Name).ShouldBe(["a-component"]);
        log.Lines.ShouldContain(l => l.Contains("b-wrong.wasm", StringComparison.Ordinal) && l.Contains("lifecycle@0.1.0#enrich has type", StringComparison.Ordinal));
    }

    /// <summary>A lifecycle component exporting only enrich, lifted with <paramref name="result"/> as its result type; the core
    /// function answers an enrich-response of one pair, PLUGIN=component (as tests/Shared/Components/plugin.wat does).</summary>
    private static byte[] Component(string result) => Wasmtime.Module.ConvertText($$"""
        (component
          (core module $m
            (memory (export "memory") 1)
            (global $heap (mut i32) (i32.const 4096))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
              (local $at i32)
              (local.set $at (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1))) (i32.sub (i32.const 0) (local.get 2))))
              (global.set $heap (i32.add (local.get $at) (local.get 3)))
              (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (then (drop (memory.grow (i32.const 1)))))
              (local.get $at))
            (data (i32.const 512) "PLUGIN")
            (data (i32.const 528) "component")
            (data (i32.const 544) "\00\02\00\00\06\00\00\00\10\02\00\00\09\00\00\00")
            (func (export "enrich") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
              (i32.store (i32.const 96) (i32.const 544))
              (i32.store (i32.const 100) (i32.const 1))
              (i32.const 96)))
          (core instance $i (instantiate $m))
          (alias core export $i "memory" (core memory $mem))
          (alias core export $i "cabi_realloc" (core func $realloc))
          {{Components.TaskInfo}}
          (type $enrich-response-def (record (field "env" (list (tuple string string)))))
          (export $enrich-response "enrich-response" (type $enrich-response-def))
          (func $enrich (param "task" $task-info) (result {{result}})
            (canon lift (core func $i "enrich") (memory $mem) (realloc $realloc)))
          (instance $lifecycle
            (export "task-info" (type $task-info))
            (export "enrich-response" (type $enrich-response))
            (export "enrich" (func $enrich)))
          (export "propeller:proplet-plugin/lifecycle@0.1.0" (instance $lifecycle)))
        """);

    /// <summary>
    /// A caller's cancellation (a task stop) of a call that then ends (the epoch check stops guest code within a tick) does
    /// not count it as blocked: after four authorize calls cancelled at once, none is blocked and the next call runs
    /// (here until its own cancellation) instead of failing at once with "4 earlier calls are still blocked". Before,
    /// every cancelled call counted as blocked until it ended.
    /// </summary>
    [Fact]
    public async Task GivenFourAuthorizeCallsCancelled_WhenTheNextCallIsMade_ThenItIsNotRefusedAsBlocked()
    {
        await File.WriteAllBytesAsync(Path.Combine(_dir, "spin.wasm"), Components.Plugin(authorize: "(loop $l (br $l))"), Ct);
        using var chain = PropletPluginChain.Load(_dir, new ListLogger<PropletPluginChain>(), new Hosting.PluginLimits { Fuel = long.MaxValue / 2, Timeout = TimeSpan.FromMinutes(10) });
        var plugin = chain.Components.ShouldHaveSingleItem();
        var task = PropletPluginChain.TaskInfoValue(Task);

        using (var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            var calls = Enumerable.Range(0, ComponentPlugin.MaxBlocked).Select(_ => plugin.CallAsync("authorize", task, stop.Token)).ToArray();
            await stop.CancelAsync();
            foreach (var call in calls)
            {
                await Should.ThrowAsync<OperationCanceledException>(call);
            }
        }

        plugin.Blocked.ShouldBe(0);
        using var next = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var running = plugin.CallAsync("authorize", task, next.Token);
        await next.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(running); // not ComponentPluginException "still blocked"
    }

    [Fact]
    public async Task MissingOrUnusableDirectory_GivesAnEmptyChain()
    {
        using var missing = PropletPluginChain.Load(Path.Combine(_dir, "nope"), new ListLogger<PropletPluginChain>());
        (await missing.AuthorizeAsync(Task, Ct)).Allowed.ShouldBeTrue();
        var file = Path.Combine(_dir, "file");
        await File.WriteAllTextAsync(file, "x", Ct);
        var log = new ListLogger<PropletPluginChain>();
        using var notDir = PropletPluginChain.Load(file, log);
        notDir.Plugins.All.ShouldBeEmpty();
        log.Lines.ShouldContain(l => l.Contains("Proplet plugins disabled", StringComparison.Ordinal));
    }

    public void Dispose() => Directory.Delete(_dir, true);
}
