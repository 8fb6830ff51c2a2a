using Propeller.Plugins.Proplet;
using Propeller.Plugins.Tests.Support;

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
