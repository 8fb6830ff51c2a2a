namespace Propeller.EndToEnd.Tests;

/// <summary>One manager and three proplets shared by the tests of the "e2e" collection (serial: the machine is small).</summary>
public sealed class SharedCluster : IAsyncLifetime
{
    internal Cluster Cluster { get; private set; } = null!;

    internal List<string> PropletIds { get; } = [];

    /// <summary>Preopened for WASI on every proplet (PROPLET_DIRS). The proplets also serve HTTP proxy components (PROPLET_HTTP_ENABLED).</summary>
    internal DirectoryInfo DataDir { get; } = Directory.CreateTempSubdirectory("e2e-data");

    public async ValueTask InitializeAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        Cluster = await Cluster.StartAsync("e2e_shared", null, ct);
        for (var i = 0; i < 3; i++)
        {
            PropletIds.Add((await Cluster.StartPropletAsync(new Dictionary<string, string> { ["PROPLET_DIRS"] = DataDir.FullName, ["PROPLET_HTTP_ENABLED"] = "true" }, ct)).Id);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Cluster.DisposeAsync();
        DataDir.Delete(true);
    }
}
