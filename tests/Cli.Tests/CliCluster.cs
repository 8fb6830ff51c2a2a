namespace Propeller.Cli.Tests;

/// <summary>One manager and one proplet (real processes on the test PostgreSQL and mosquitto) shared by the CLI tests.</summary>
public sealed class CliCluster : IAsyncLifetime
{
    internal Cluster Cluster { get; private set; } = null!;

    internal string PropletId { get; private set; } = "";

    internal string Url => Cluster.Http.BaseAddress!.ToString().TrimEnd('/');

    public async ValueTask InitializeAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        Cluster = await Cluster.StartAsync("cli", null, ct);
        PropletId = (await Cluster.StartPropletAsync(null, ct)).Id;
    }

    public ValueTask DisposeAsync() => Cluster.DisposeAsync();
}

/// <summary>The CLI tests run one at a time against one <see cref="CliCluster"/>.</summary>
[CollectionDefinition("cli", DisableParallelization = true)]
public sealed class CliCollection : ICollectionFixture<CliCluster>;
