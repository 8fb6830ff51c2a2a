using Propeller.Application.Plugins;
using Propeller.Plugins.Tests.Support;

namespace Propeller.Plugins.Tests;

/// <summary>The example plugins of examples/plugins, built from C by the test run.</summary>
public sealed class ExampleTests : IDisposable
{
    private readonly PluginDir _dir = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static PluginTaskInfo TaskNamed(string name, IReadOnlyDictionary<string, string>? env = null) =>
        new() { Id = "", Name = name, ImageUrl = "docker.io/library/app:1", Env = env ?? new Dictionary<string, string>() };

    [Fact]
    public async Task Auth_RequiresANameAndAUser_AndRecordsTheCreator()
    {
        _dir.AddBytes("plugin-auth", Examples.Get("plugin-auth"));
        var gate = _dir.Gate();
        (await gate.AuthorizeAsync(new("alice", PluginAction.Create), TaskNamed(""), Ct)).Reason.ShouldBe("task name must not be empty");
        (await gate.AuthorizeAsync(new(null, PluginAction.Create), TaskNamed("t"), Ct)).Reason.ShouldBe("user_id is required for create");
        (await gate.AuthorizeAsync(new(null, PluginAction.Start), TaskNamed("t"), Ct)).Reason.ShouldBe("user_id is required for start");
        (await gate.AuthorizeAsync(new(null, PluginAction.Stop), TaskNamed("t"), Ct)).Allowed.ShouldBeTrue();
        (await gate.AuthorizeAsync(new("alice", PluginAction.Create), TaskNamed("t"), Ct)).Allowed.ShouldBeTrue();

        var enriched = await gate.EnrichAsync(new("alice", PluginAction.None), TaskNamed("t"), Ct);
        enriched.Env.ShouldBe(new Dictionary<string, string> { ["PROPELLER_PLUGIN_AUTHZ"] = "plugin-auth", ["PROPELLER_CREATED_BY"] = "alice" }, ignoreOrder: true);
    }

    [Fact]
    public async Task Auth_OnlyTheCreatorMayStart_SystemMayToo()
    {
        _dir.AddBytes("plugin-auth", Examples.Get("plugin-auth"));
        var gate = _dir.Gate();
        var owned = TaskNamed("t", new Dictionary<string, string> { ["PROPELLER_CREATED_BY"] = "alice", ["OTHER"] = "x" });
        (await gate.AuthorizeAsync(new("alice", PluginAction.Start), owned, Ct)).Allowed.ShouldBeTrue();
        (await gate.AuthorizeAsync(new("bob", PluginAction.Start), owned, Ct)).Reason.ShouldBe("only the creator of the task may start it");
        (await gate.AuthorizeAsync(new(PluginAuthContext.SystemUser, PluginAction.Start), owned, Ct)).Allowed.ShouldBeTrue();
    }

    [Theory]
    [InlineData("docker.io/library/app:1", "mirror.local/library/app:1")]
    [InlineData("ghcr.io/org/app@sha256:abc", "mirror.local/org/app@sha256:abc")]
    [InlineData("localhost:5000/app", "mirror.local/app")]
    [InlineData("library/app:2", "mirror.local/library/app:2")]
    [InlineData("app", "mirror.local/app")]
    public async Task Proxy_RewritesTheRegistryHost(string image, string expected)
    {
        _dir.AddBytes("plugin-proxy", Examples.Get("plugin-proxy"));
        var outcome = await _dir.Gate().EnrichAsync(new("u", PluginAction.None), TaskNamed("t") with { ImageUrl = image }, Ct);
        outcome.ImageUrl.ShouldBe(expected);
    }

    [Fact]
    public async Task Proxy_MirrorIsSetAtBuildTime_AndChainsAfterAuth()
    {
        _dir.AddBytes("1-auth", Examples.Get("plugin-auth"))
            .AddBytes("2-proxy", Examples.Get("plugin-proxy", "PROPELLER_REGISTRY_MIRROR=\"mirror.corp.com\""));
        var gate = _dir.Gate();
        var outcome = await gate.EnrichAsync(new("carol", PluginAction.None), TaskNamed("t"), Ct);
        outcome.ImageUrl.ShouldBe("mirror.corp.com/library/app:1");
        outcome.Env!["PROPELLER_CREATED_BY"].ShouldBe("carol");
        (await gate.EnrichAsync(new("carol", PluginAction.None), TaskNamed("t") with { ImageUrl = null }, Ct)).ImageUrl.ShouldBeNull();
    }

    public void Dispose() => _dir.Dispose();
}
