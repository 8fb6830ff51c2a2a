using DotNet.Testcontainers.Builders;
using Testcontainers.PostgreSql;

namespace Propeller.Tests.Shared;

/// <summary>
/// The one PostgreSQL every test project uses (STYLE.md TESTS, issue 14): a Testcontainers.PostgreSql container when a
/// Docker engine answers (laptops, hosted CI), else the cluster scripts/infra.sh starts on loopback
/// (PROPELLER_TEST_DB, default below; this machine has no Docker engine). Started once per test process; the choice
/// is written to stderr once. Each test class then works in its own schema.
/// </summary>
public static class TestPostgres
{
    public const string ClusterDefault = "Host=127.0.0.1;Port=55432;Username=propeller;Password=propeller;Database=propeller_test";

    private static readonly Lock Gate = new();
    private static Task<string>? _server;
    private static string? _started;

    /// <summary>The connection string of the chosen server (starting the container on first use).</summary>
    public static Task<string> ConnectionStringAsync()
    {
        lock (Gate)
        {
            return _server ??= StartAsync();
        }
    }

    /// <summary>
    /// The connection string for code that cannot await (field initialisers): valid once the server is up, which
    /// <see cref="TestPostgresFixture"/> as an assembly fixture guarantees before the first test class is built.
    /// </summary>
    public static string ConnectionString => _started
        ?? throw new InvalidOperationException("the test PostgreSQL is not started: register TestPostgresFixture with [assembly: AssemblyFixture(typeof(TestPostgresFixture))] or await TestPostgres.ConnectionStringAsync() first");

    /// <summary>What the choice was, for the log and for tests that assert it.</summary>
    public static string Choice { get; private set; } = "";

    private static string Cluster => Environment.GetEnvironmentVariable("PROPELLER_TEST_DB") is { Length: > 0 } value ? value : ClusterDefault;

    private static async Task<string> StartAsync()
    {
        string connectionString;
        try
        {
            var container = new PostgreSqlBuilder("postgres:15-alpine").Build();
            // Process-wide: not tied to the test that happened to ask first.
            await container.StartAsync(CancellationToken.None);
            connectionString = container.GetConnectionString();
            Choice = "Testcontainers.PostgreSql (postgres:15-alpine)";
        }
        catch (Exception ex) when (ex is DockerUnavailableException or DockerConfigurationException)
        {
            connectionString = Cluster;
            Choice = $"the scripts/infra.sh cluster (no Docker engine answered: {ex.Message.Split('\n')[0]})";
        }

        await Console.Error.WriteLineAsync($"tests: PostgreSQL from {Choice}");
        _started = connectionString;
        return connectionString;
    }
}

/// <summary>Starts <see cref="TestPostgres"/> before any test class of the assembly is built (xunit v3 assembly fixture).</summary>
public sealed class TestPostgresFixture : IAsyncLifetime
{
    public async ValueTask InitializeAsync() => await TestPostgres.ConnectionStringAsync();

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
