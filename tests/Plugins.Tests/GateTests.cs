using System.Text;
using Propeller.Application.Plugins;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Runtime;
using Propeller.Plugins.Tests.Support;

namespace Propeller.Plugins.Tests;

public sealed class GateTests : IDisposable
{
    private static readonly PluginTaskInfo Task = new() { Id = "", Name = "job", ImageUrl = "docker.io/lib/app:1", Inputs = ["1"] };
    private static readonly PluginAuthContext Create = new("alice", PluginAction.Create);
    private readonly PluginDir _dir = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Authorize_AllAllow_AllowsWithOneDecisionPerPlugin()
    {
        _dir.Add("a", Wat.Plugin(Wat.Answer("authorize", """{"allow":true,"extra":[1,2]}""")))
            .Add("b", Wat.Plugin(Wat.Answer("authorize", """{"allow":true}""")));
        var outcome = await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeTrue();
        outcome.Decisions.Select(d => (d.Plugin, d.Hook, d.Allowed)).ShouldBe([("a", "authorize", true), ("b", "authorize", true)]);
    }

    [Fact]
    public async Task Authorize_FirstDenyStopsTheChain_WithItsReason()
    {
        _dir.Add("1-deny", Wat.Plugin(Wat.Answer("authorize", """{"allow":false,"reason":"not on my watch"}""")))
            .Add("2-never", Wat.Plugin("(func (export \"authorize\") (param i32 i32) (result i64) unreachable)"));
        var outcome = await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("not on my watch");
        outcome.Decisions.Count.ShouldBe(1);
        _dir.Catalog().Current.Find("2-never")!.Counters.Calls.ShouldBe(0);
        // Logged with who asked what: a denied command appends no event, so its decisions are stored nowhere else.
        _dir.GateLog.Lines.ShouldContain("Information: Plugin 1-deny denied authorize (Create) of task (new) for user alice: not on my watch");
    }

    [Theory]
    [InlineData("""{"allow":false}""")]
    [InlineData("{}")]
    [InlineData("null")]
    [InlineData("""{"reason":"","allow":false,"unknown":{"x":1}}""")]
    public async Task Authorize_DenyWithoutReason_SaysDeniedByPlugin(string answer)
    {
        _dir.Add("p", Wat.Plugin(Wat.Answer("authorize", answer)));
        var outcome = await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("denied by plugin");
    }

    [Fact]
    public async Task Authorize_AnAnswerOverTheSizeLimit_IsMalformed_OneAtTheLimitIsRead()
    {
        const int Limit = PluginResponses.MaxAnswerBytes;
        const string Allow = """{"allow":true}""";

        // At the limit: spaces (JSON allows leading white space) and then the object, MaxAnswerBytes in all.
        _dir.Add("1-at", Wat.Plugin(
            $$"""
            (data (i32.const {{1024 + Limit - Allow.Length}}) "{{Wat.Escape(Encoding.UTF8.GetBytes(Allow))}}")
            (func (export "authorize") (param i32 i32) (result i64)
              (memory.fill (i32.const 1024) (i32.const 32) (i32.const {{Limit - Allow.Length}}))
              (i64.const {{Wat.Packed(1024, Limit)}}))
            """,
            pages: 20));
        _dir.Add("2-over", Wat.Plugin($$"""(func (export "authorize") (param i32 i32) (result i64) (i64.const {{Wat.Packed(1024, Limit + 1)}}))""", pages: 20));
        var outcome = await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Decisions.Select(d => (d.Plugin, d.Allowed)).ShouldBe([("1-at", true), ("2-over", false)]);
        outcome.Reason.ShouldBe($"plugin 2-over authorize: answer of {Limit + 1} bytes is over the limit of {Limit} bytes");
        _dir.Catalog().Counters("2-over").Failures.ShouldBe(1);
        _dir.Log.Lines.ShouldContain(l => l.Contains("2-over authorize failed (Malformed)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Authorize_ALongDenyReason_IsCutWithAMarker()
    {
        _dir.Add("p", Wat.Plugin(Wat.Answer("authorize", $$"""{"allow":false,"reason":"{{new string('x', 5000)}}"}""")));
        var outcome = await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe(new string('x', PluginResponses.MaxReasonChars) + PluginResponses.TruncatedMarker);
        outcome.Decisions.Single().Reason.ShouldBe(outcome.Reason);
    }

    [Fact]
    public async Task Authorize_ZeroLengthAnswer_Denies()
    {
        _dir.Add("p", Wat.Plugin("(func (export \"authorize\") (param i32 i32) (result i64) (i64.const 0))"));
        var outcome = await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("denied by plugin");
    }

    [Fact]
    public async Task Authorize_MissingExport_Allows_AndWarns()
    {
        _dir.Add("quiet", Wat.Plugin(""));
        var outcome = await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeTrue();
        outcome.Decisions.ShouldBeEmpty();
        _dir.Log.Lines.ShouldContain(l => l.Contains("quiet has no authorize export", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Enrich_MergesInOrder_EveryPluginSeesTheOriginal()
    {
        _dir.Add("a", Wat.Plugin(Wat.Answer("enrich_task", """{"env":{"A":"1","K":"a"},"priority":70,"inputs":["1","x"],"image_url":"mirror/a"}""")))
            .Add("b", Wat.Plugin(Wat.Answer("enrich_task", """{"env":{"K":"b"},"inputs":["x","y"],"image_url":""}""")))
            .Add("c", Wat.Plugin("(func (export \"enrich_task\") (param i32 i32) (result i64) unreachable)"));
        var outcome = await _dir.Gate().EnrichAsync(Create, Task, Ct);
        outcome.Env!.ShouldBe(new Dictionary<string, string> { ["A"] = "1", ["K"] = "b" }, ignoreOrder: true);
        outcome.Priority.ShouldBe(70);
        outcome.Inputs.ShouldBe(["1", "x", "y"]);
        outcome.ImageUrl.ShouldBe("mirror/a");
        outcome.Decisions.Select(d => d.Allowed).ShouldBe([true, true, false]);
        outcome.Decisions[2].Reason!.ShouldStartWith("plugin c enrich_task: wasm trap: unreachable");
    }

    [Fact]
    public async Task Select_MergesTagsAndMaxMemory()
    {
        _dir.Add("a", Wat.Plugin(Wat.Answer("on_before_proplet_select", """{"allow":true,"required_tags":["gpu"],"min_memory_bytes":100}""")))
            .Add("b", Wat.Plugin(Wat.Answer("on_before_proplet_select", """{"allow":true,"required_tags":["gpu","eu"],"min_memory_bytes":50}""")));
        var outcome = await _dir.Gate().BeforePropletSelectAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeTrue();
        outcome.RequiredTags.ShouldBe(["gpu", "eu"]);
        outcome.MinMemoryBytes.ShouldBe(100UL);
    }

    [Fact]
    public async Task Select_Deny_DefaultReason()
    {
        _dir.Add("a", Wat.Plugin(Wat.Answer("on_before_proplet_select", "{}")));
        var outcome = await _dir.Gate().BeforePropletSelectAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("proplet selection blocked by plugin");
    }

    [Fact]
    public async Task Select_AnAnswerThatDoesNotDecode_IsMalformed_AndDenies()
    {
        _dir.Add("s", Wat.Plugin(Wat.Answer("on_before_proplet_select", """{"allow":true,"required_tags":["gpu","\ud800"]}""")))
            .Add("u", Wat.Plugin(Wat.Answer("on_before_proplet_select", [.. "{\"allow\":true,\"required_tags\":[\""u8, 0xc3, 0x28, .. "\"]}"u8])));
        var outcome = await _dir.Gate().BeforePropletSelectAsync(Create, Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason!.ShouldStartWith("plugin s on_before_proplet_select: malformed JSON answer");

        File.Delete(Path.Combine(_dir.Path, "s.wasm"));
        _dir.Catalog().Reload(Ct);
        var raw = await _dir.Gate().BeforePropletSelectAsync(Create, Task, Ct);
        raw.Allowed.ShouldBeFalse();
        raw.Reason!.ShouldStartWith("plugin u on_before_proplet_select: malformed JSON answer");
        _dir.Catalog().Counters("s").Failures.ShouldBe(1);
        _dir.Catalog().Counters("u").Failures.ShouldBe(1);
        _dir.Log.Lines.Count(l => l.Contains("failed (Malformed): malformed JSON answer", StringComparison.Ordinal)).ShouldBe(2);
    }

    [Fact]
    public async Task Enrich_AnAnswerThatDoesNotDecode_IsSkipped()
    {
        _dir.Add("a", Wat.Plugin(Wat.Answer("enrich_task", """{"env":{"A":"1"}}""")))
            .Add("b", Wat.Plugin(Wat.Answer("enrich_task", """{"env":{"B":"\udfff"},"priority":1}""")))
            .Add("c", Wat.Plugin(Wat.Answer("enrich_task", [.. "{\"image_url\":\""u8, 0xff, .. "\"}"u8])));
        var outcome = await _dir.Gate().EnrichAsync(Create, Task, Ct);
        outcome.Env!.ShouldBe(new Dictionary<string, string> { ["A"] = "1" });
        outcome.Priority.ShouldBeNull();
        outcome.ImageUrl.ShouldBeNull();
        outcome.Decisions.Select(d => d.Allowed).ShouldBe([true, false, false]);
        outcome.Decisions[1].Reason!.ShouldStartWith("plugin b enrich_task: malformed JSON answer");
        outcome.Decisions[2].Reason!.ShouldStartWith("plugin c enrich_task: malformed JSON answer");
    }

    [Fact]
    public async Task Dispatch_MergesExtraEnvInOrder_AndDenies()
    {
        var proplet = new PluginPropletInfo("p1", "edge-1", ["gpu"], 1024, null);
        _dir.Add("a", Wat.Plugin(Wat.Answer("on_before_dispatch", """{"allow":true,"extra_env":{"X":"a","Y":"a"}}""")))
            .Add("b", Wat.Plugin(Wat.Answer("on_before_dispatch", """{"allow":true,"extra_env":{"Y":"b"}}""")));
        var outcome = await _dir.Gate().BeforeDispatchAsync(Create, Task, proplet, Ct);
        outcome.Allowed.ShouldBeTrue();
        outcome.ExtraEnv.ShouldBe(new Dictionary<string, string> { ["X"] = "a", ["Y"] = "b" }, ignoreOrder: true);

        using var other = new PluginDir();
        other.Add("a", Wat.Plugin(Wat.Answer("on_before_dispatch", """{"allow":false}""")));
        var denied = await other.Gate().BeforeDispatchAsync(Create, Task, proplet, Ct);
        denied.Allowed.ShouldBeFalse();
        denied.Reason.ShouldBe("dispatch blocked by plugin");
    }

    /// <summary>
    /// A malformed answer's failure reason names a plugin's key by at most its start: it becomes the task's error, goes
    /// into events and logs, and is cut like a deny reason. Before, <c>extra_env</c> with one huge key and a value that is
    /// not a string put the whole key (up to 1 MiB) into the reason.
    /// </summary>
    [Fact]
    public async Task Dispatch_AMalformedAnswerWithAHugeKey_HasAShortReason()
    {
        var key = new string('k', 10_000);
        var proplet = new PluginPropletInfo("p1", "edge-1", [], 1024, null);
        _dir.Add("a", Wat.Plugin(Wat.Answer("on_before_dispatch", $$$"""{"allow":true,"extra_env":{"{{{key}}}":1}}""")));

        var outcome = await _dir.Gate().BeforeDispatchAsync(Create, Task, proplet, Ct);

        outcome.Allowed.ShouldBeFalse();
        outcome.Reason!.ShouldStartWith("plugin a on_before_dispatch: \"extra_env.kkkk");
        outcome.Reason!.ShouldContain("must be a string, got Number");
        outcome.Reason!.Length.ShouldBeLessThan(200);
        _dir.Log.Lines.ShouldAllBe(l => l.Length < 1000);
    }

    [Fact]
    public async Task Notifications_RunInTheBackground_AndDrain()
    {
        _dir.Add("n", Wat.Plugin("""
            (func (export "on_task_start") (param i32 i32))
            (func (export "on_task_complete") (param i32 i32) (result i64) (i64.const 99))
            """));
        var gate = _dir.Gate();
        gate.OnTaskStarted(Task with { Id = "t1" });
        gate.OnTaskCompleted(Task with { Id = "t1" }, success: true, error: null);
        await gate.DrainAsync(Ct);
        gate.PendingNotifications.ShouldBe(0);
        var counters = _dir.Catalog().Current.Find("n")!.Counters;
        counters.Calls.ShouldBe(2);
        counters.Failures.ShouldBe(0);
    }

    [Fact]
    public async Task NoPlugins_AllowsEverything()
    {
        var gate = _dir.Gate();
        (await gate.AuthorizeAsync(Create, Task, Ct)).ShouldBe(GateOutcome.Allow);
        (await gate.EnrichAsync(Create, Task, Ct)).ShouldBe(EnrichOutcome.None);
    }

    [Fact]
    public async Task InactivePlugin_IsListedButNotCalled()
    {
        _dir.Add("off", Wat.Plugin(Wat.Answer("authorize", "{}")), """{"active": false}""");
        var gate = _dir.Gate();
        (await gate.AuthorizeAsync(Create, Task, Ct)).Allowed.ShouldBeTrue();
        _dir.Catalog().Current.All.Count.ShouldBe(1);
    }

    [Fact]
    public async Task PluginStdout_IsLoggedPerLineWithItsName()
    {
        _dir.Add("talk", Wat.Plugin(
            """
            (data (i32.const 2000) "hello\nworld\n")
            (data (i32.const 2100) "\d0\07\00\00\0c\00\00\00")
            (func (export "authorize") (param i32 i32) (result i64)
              (drop (call $fd_write (i32.const 1) (i32.const 2100) (i32.const 1) (i32.const 2200)))
              (i64.const 0))
            """,
            imports: """(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))"""));
        await _dir.Gate().AuthorizeAsync(Create, Task, Ct);
        _dir.Log.Lines.ShouldContain("Information: plugin=talk hello");
        _dir.Log.Lines.ShouldContain("Information: plugin=talk world");
    }

    /// <summary>
    /// A call that writes 64 KiB of newlines to stdout and to stderr (all the capture keeps) logs at most 50 lines of each
    /// and one line counting the rest. Before, each of its 131,072 lines was a log record.
    /// </summary>
    [Fact]
    public async Task GivenAPluginFloodingItsOutput_WhenItIsCalled_ThenTheLinesLoggedAreCapped_AndTheRestCounted()
    {
        _dir.Add("flood", Wat.Plugin(
            """
            (func (export "authorize") (param i32 i32) (result i64)
              (memory.fill (i32.const 70000) (i32.const 10) (i32.const 65536))
              (i32.store (i32.const 2100) (i32.const 70000))
              (i32.store (i32.const 2104) (i32.const 65536))
              (drop (call $fd_write (i32.const 1) (i32.const 2100) (i32.const 1) (i32.const 2200)))
              (drop (call $fd_write (i32.const 2) (i32.const 2100) (i32.const 1) (i32.const 2200)))
              (i64.const 0))
            """,
            imports: """(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))""",
            pages: 3));

        await _dir.Gate().AuthorizeAsync(Create, Task, Ct);

        _dir.Log.Lines.Count(l => l.StartsWith("Information: plugin=flood", StringComparison.Ordinal)).ShouldBe(50);
        _dir.Log.Lines.Count(l => l.StartsWith("Warning: plugin=flood ", StringComparison.Ordinal)).ShouldBe(51);
        _dir.Log.Lines.ShouldContain("Warning: plugin=flood 130972 more lines of output (130972 bytes) not logged: at most 50 lines per stream and call are");
    }

    [Fact]
    public async Task TheWatExampleOfTheDocs_Allows()
    {
        var docs = await File.ReadAllTextAsync(Path.Combine(AppContext.BaseDirectory, "docs", "plugins.md"), Ct);
        var start = docs.IndexOf("```wat\n(module", StringComparison.Ordinal) + "```wat\n".Length;
        var wat = docs[start..docs.IndexOf("```", start, StringComparison.Ordinal)];
        _dir.Add("doc", wat);
        (await _dir.Gate().AuthorizeAsync(Create, Task, Ct)).Allowed.ShouldBeTrue();
    }

    public void Dispose() => _dir.Dispose();
}
