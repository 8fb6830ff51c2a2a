using System.Text;
using Propeller.Application.Plugins;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Proplet;

namespace Propeller.Plugins.Tests;

/// <summary>The request JSON of spec §7.4–7.8, byte for byte.</summary>
public sealed class JsonShapeTests
{
    [Fact]
    public void TaskInfo_OmitsEmptyValues_KeepsIdAndName()
    {
        var json = Encoding.UTF8.GetString(PluginJson.ContextAndTask(new(null, PluginAction.Create), new PluginTaskInfo { Id = "", Name = "n" }, withAction: true));
        json.ShouldBe("""{"context":{"action":"create"},"task":{"id":"","name":"n"}}""");
    }

    [Fact]
    public void TaskInfo_Full()
    {
        var task = new PluginTaskInfo
        {
            Id = "t1",
            Name = "n",
            Kind = "standard",
            ImageUrl = "img",
            Inputs = ["1"],
            CliArgs = ["--invoke", "add"],
            Env = new Dictionary<string, string> { ["K"] = "V" },
            PropletId = "p",
            Priority = 50,
            Daemon = true,
            Encrypted = true,
            CreatedAt = new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero),
        };
        var json = Encoding.UTF8.GetString(PluginJson.ContextAndTask(new("u", PluginAction.Start), task, withAction: false));
        json.ShouldBe("""{"context":{"user_id":"u","action":""},"task":{"id":"t1","name":"n","kind":"standard","image_url":"img","inputs":["1"],"cli_args":["--invoke","add"],"env":{"K":"V"},"proplet_id":"p","priority":50,"daemon":true,"encrypted":true,"created_at":"2025-01-01T00:00:00Z"}}""");
    }

    [Theory]
    [InlineData(PluginAction.Create, "create")]
    [InlineData(PluginAction.Start, "start")]
    [InlineData(PluginAction.Stop, "stop")]
    [InlineData(PluginAction.Invoke, "invoke")]
    [InlineData(PluginAction.Delete, "delete")]
    [InlineData(PluginAction.Update, "update")]
    [InlineData(PluginAction.None, "")]
    public void Actions(PluginAction action, string name) => PluginJson.ActionName(action).ShouldBe(name);

    [Fact]
    public void Dispatch_And_Events()
    {
        var task = new PluginTaskInfo { Id = "t", Name = "n" };
        Encoding.UTF8.GetString(PluginJson.Dispatch(new("u", PluginAction.Start), task, new PluginPropletInfo("p", "edge", ["gpu"], 0, null)))
            .ShouldBe("""{"context":{"user_id":"u","action":""},"task":{"id":"t","name":"n"},"proplet":{"id":"p","name":"edge","tags":["gpu"]}}""");
        Encoding.UTF8.GetString(PluginJson.TaskEvent(task)).ShouldBe("""{"task":{"id":"t","name":"n"}}""");
        Encoding.UTF8.GetString(PluginJson.CompleteEvent(task, false, null)).ShouldBe("""{"task":{"id":"t","name":"n"}}""");
        Encoding.UTF8.GetString(PluginJson.CompleteEvent(task, true, "x")).ShouldBe("""{"task":{"id":"t","name":"n"},"success":true,"error":"x"}""");
    }

    [Fact]
    public void PropletRequest_HasEveryField()
    {
        Encoding.UTF8.GetString(PropletPluginChain.Request(new PropletTaskInfo { Id = "t", Name = "n" }))
            .ShouldBe("""{"task":{"id":"t","name":"n","image_url":"","cli_args":[],"env":{},"daemon":false,"encrypted":false}}""");
    }

    /// <summary>Answer keys match without regard to case, as the original's Go decoder matches them to its fields (a TinyGo
    /// plugin's untagged struct answers <c>{"Allow":true}</c>); a key given twice counts as its last value. Map keys
    /// (env) are data and keep their case. Before, <c>{"Allow":true}</c> denied.</summary>
    [Fact]
    public void AnswerKeys_MatchWithoutRegardToCase_AsTheOriginals()
    {
        var allow = PluginResponses.Allow("""{"Allow":true,"Reason":"ok","REQUIRED_TAGS":["gpu"],"Extra_Env":{"Key":"v"}}"""u8.ToArray());
        (allow.Allow, allow.Reason, allow.RequiredTags.Single(), allow.ExtraEnv!.Single()).ShouldBe((true, "ok", "gpu", KeyValuePair.Create("Key", "v")));
        PluginResponses.Allow("""{"allow":true,"ALLOW":false}"""u8.ToArray()).Allow.ShouldBeFalse();
        var enrich = PluginResponses.Enrich("""{"Env":{"A":"1"},"Priority":7,"Image_URL":"img"}"""u8.ToArray());
        (enrich.Env!.Single(), enrich.Priority, enrich.ImageUrl).ShouldBe((KeyValuePair.Create("A", "1"), (int?)7, "img"));
        PluginResponses.JobError("""{"Error":"boom"}"""u8.ToArray()).ShouldBe("boom");
    }

    [Fact]
    public void AJobErrorOrReasonPastTheLimit_IsCut_NeverInsideASurrogatePair()
    {
        var error = PluginResponses.JobError(Encoding.UTF8.GetBytes($$"""{"error":"{{new string('e', 5000)}}"}"""));
        error.ShouldBe(new string('e', PluginResponses.MaxReasonChars) + PluginResponses.TruncatedMarker);
        var emoji = new string('x', PluginResponses.MaxReasonChars - 1) + "\U0001F600tail";
        var reason = PluginResponses.Allow(Encoding.UTF8.GetBytes($$"""{"allow":false,"reason":"{{emoji}}"}""")).Reason;
        reason.ShouldBe(new string('x', PluginResponses.MaxReasonChars - 1) + PluginResponses.TruncatedMarker);
        PluginResponses.Allow(Encoding.UTF8.GetBytes("""{"allow":false,"reason":"short"}""")).Reason.ShouldBe("short");
    }

    /// <summary>A value the events it would go into cannot hold (a NUL, a lone surrogate, a number beyond numeric's range)
    /// anywhere in an answer makes it malformed (StorableText).</summary>
    [Theory]
    [InlineData("""{"allow":false,"reason":"no\u0000"}""", false, "must not contain \\u0000")]
    [InlineData("""{"allow":true,"extra_env":{"K":"v\u0000"}}""", false, "must not contain \\u0000")]
    [InlineData("""{"env":{"K\u0000":"v"}}""", true, "must not contain \\u0000")]
    [InlineData("""{"inputs":["\u0000"]}""", true, "must not contain \\u0000")]
    [InlineData("""{"allow":false,"reason":"no\udc00"}""", false, "must be valid Unicode")]
    [InlineData("""{"env":{"K\ud800":"v"}}""", true, "must be valid Unicode")]
    [InlineData("""{"metadata":{"n":1e200000}}""", true, "beyond PostgreSQL's numeric range")]
    public void AnAnswerWithAValuePostgresCannotStore_IsMalformed(string answer, bool enrich, string problem)
    {
        var bytes = Encoding.UTF8.GetBytes(answer);
        Should.Throw<FormatException>(() => enrich ? (object)PluginResponses.Enrich(bytes) : PluginResponses.Allow(bytes)).Message.ShouldContain(problem);
    }
}
