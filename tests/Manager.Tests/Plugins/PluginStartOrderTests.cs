using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Propeller.Application.Plugins;
using Propeller.Plugins.Tests.Support;
using Propeller.Tests.Shared;
using Wolverine.Runtime;

namespace Propeller.Manager.Tests.Plugins;

/// <summary>
/// The plugins are loaded before anything can be gated: a gate used before the host started already has them (it never
/// allows everything for lack of a loaded set), and the plugin host starts before the command pipeline (and so stops,
/// draining notifications, after it).
/// </summary>
public sealed class PluginStartOrderTests : IAsyncDisposable
{
    private static readonly PluginTaskInfo Task = new() { Id = "t", Name = "n" };
    private readonly DirectoryInfo _plugins = Directory.CreateTempSubdirectory("manager-plugins-order");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private void AddDenyAll() => File.WriteAllBytes(
        Path.Combine(_plugins.FullName, "deny.wasm"),
        Wat.ToWasm(Wat.Plugin(Wat.Answer("authorize", """{"allow":false,"reason":"nobody"}"""))));

    [Fact]
    public async Task AGateUsedBeforeTheHostStarted_HasThePluginsLoaded()
    {
        AddDenyAll();
        var db = await TestPostgres.ConnectionStringAsync();
        await using var app = ManagerApp.Build(["--urls", "http://127.0.0.1:0"], b =>
        {
            b.Configuration["EventStore:ConnectionString"] = db;
            b.Configuration["EventStore:Schema"] = "api_plugin_order_unstarted";
            b.Configuration["MANAGER_MQTT_ADDRESS"] = "";
            b.Configuration["MANAGER_PLUGIN_DIR"] = _plugins.FullName;
        });
        var outcome = await app.Services.GetRequiredService<IPluginGate>().AuthorizeAsync(new PluginAuthContext("u", PluginAction.Start), Task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("nobody");
    }

    [Fact]
    public async Task ThePluginHost_StartsBeforeTheCommandPipeline()
    {
        AddDenyAll();
        await using var server = await ManagerServer.StartAsync("api_plugin_order", new Dictionary<string, string> { ["MANAGER_PLUGIN_DIR"] = _plugins.FullName });
        var hosted = server.Services.GetServices<IHostedService>().Select(s => s.GetType()).ToList();
        var plugins = hosted.FindIndex(t => t.Name == "PluginHostService");
        var wolverine = hosted.FindIndex(t => typeof(IWolverineRuntime).IsAssignableFrom(t));
        var batcher = hosted.FindIndex(t => t.Name == "TaskCommandBatcher");
        plugins.ShouldBeGreaterThanOrEqualTo(0);
        wolverine.ShouldBeGreaterThan(plugins, string.Join(", ", hosted.Select(t => t.Name)));
        batcher.ShouldBeGreaterThan(plugins, string.Join(", ", hosted.Select(t => t.Name)));
    }

    public ValueTask DisposeAsync()
    {
        _plugins.Delete(recursive: true);
        return ValueTask.CompletedTask;
    }
}
