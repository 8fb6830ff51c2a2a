namespace Propeller.Dashboard.Tests;

/// <summary>
/// A manager with one proplet, a second manager with the example auth plugin (which denies), and one headless
/// Chromium, shared by the dashboard tests (one at a time: the machine is small).
/// </summary>
public sealed class DashboardCluster : IAsyncLifetime
{
    private readonly DirectoryInfo _plugins = Directory.CreateTempSubdirectory("dashboard-plugins");

    internal Cluster Cluster { get; private set; } = null!;

    internal Cluster Guarded { get; private set; } = null!;

    internal string PropletId { get; private set; } = "";

    /// <summary>The guarded manager's plugin directory (a test that changes it puts it back).</summary>
    internal string PluginDirectory => _plugins.FullName;

    internal Browser Browser { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        await File.WriteAllBytesAsync(Path.Combine(_plugins.FullName, "10-plugin-auth.wasm"), Examples.Get("plugin-auth"), ct);
        Cluster = await Cluster.StartAsync("dash", null, ct);
        PropletId = (await Cluster.StartPropletAsync(null, ct)).Id;
        Guarded = await Cluster.StartAsync("dash_auth", new Dictionary<string, string> { ["MANAGER_PLUGIN_DIR"] = _plugins.FullName, ["MANAGER_MQTT_ADDRESS"] = "" }, ct);
        Browser = await Browser.LaunchAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        await Guarded.DisposeAsync();
        await Cluster.DisposeAsync();
        _plugins.Delete(recursive: true);
    }
}

[CollectionDefinition("dashboard", DisableParallelization = true)]
public sealed class DashboardCollection : ICollectionFixture<DashboardCluster>;
