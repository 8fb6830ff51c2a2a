using System.Net;
using System.Text.Json;
using Npgsql;
using Propeller.Tests.Shared;

namespace Propeller.Manager.Tests.Http;

/// <summary>
/// /metrics and /health/ready while PostgreSQL is unreachable or slow: the manager runs through a loopback TCP relay to
/// PostgreSQL that the test cuts (connections dropped, new ones refused), or behind a lock that makes a check time out.
/// </summary>
public sealed class DatabaseOutageTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenPostgresBecameUnreachable_WhenMetricsAreScraped_ThenTheAnswerIs200WithTheApiSeriesAndTheFailedSamplers()
    {
        var (relay, connectionString) = await TcpRelay.InFrontOfTestPostgresAsync();
        await using var relayOwned = relay;
        await using var server = await ManagerServer.StartAsync("metrics_outage", new Dictionary<string, string> { ["EventStore:ConnectionString"] = connectionString });
        (await server.Client.GetAsync("/metrics", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        relay.Cut();
        var response = await server.Client.GetAsync("/metrics", Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK, text);
        text.ShouldContain("manager_api_request_count");
        text.ShouldContain("manager_metrics_sample_ok{sampler=\"projections\"} 0");
        text.ShouldContain("manager_metrics_sample_ok{sampler=\"dead_letters\"} 0");
    }

    /// <summary>Marten names the schema unquoted (PostgreSQL folds it to lower case); the readiness check and the
    /// telemetry once quoted it as given, so a mixed-case name left the manager never ready.</summary>
    [Fact]
    public async Task GivenAMixedCaseSchema_WhenTheManagerStarts_ThenItIsReadyAndReadsItsOwnTables()
    {
        await using (var dataSource = NpgsqlDataSource.Create(await TestPostgres.ConnectionStringAsync()))
        {
            await using var drop = dataSource.CreateCommand("drop schema if exists api_mixed_case cascade; drop schema if exists api_mixed_case_plugins cascade");
            await drop.ExecuteNonQueryAsync(Ct);
        }

        await using var server = await ManagerServer.StartAsync("Api_Mixed_Case", dropSchema: false);
        (await server.Client.PostAsync("/tasks", new StringContent("""{"name":"main"}""", System.Text.Encoding.UTF8, "application/json"), Ct))
            .StatusCode.ShouldBe(HttpStatusCode.Created);
        var metrics = await server.Client.GetStringAsync("/metrics", Ct);
        metrics.ShouldContain("manager_metrics_sample_ok{sampler=\"projections\"} 1");
        metrics.ShouldContain("manager_metrics_sample_ok{sampler=\"dead_letters\"} 1");
        server.Warnings.ToString().ShouldNotContain("42P01");
    }

    [Fact]
    public async Task GivenTheProjectionProgressIsLocked_WhenReadinessIsChecked_ThenTheAnswerIs503NamingTheProjectionsCheck()
    {
        var db = new NpgsqlConnectionStringBuilder(await TestPostgres.ConnectionStringAsync()) { CommandTimeout = 2 };
        await using var server = await ManagerServer.StartAsync("ready_outage", new Dictionary<string, string> { ["EventStore:ConnectionString"] = db.ConnectionString });

        // A migration (or a stuck transaction) holding Marten's progression table: reading it times out.
        await using var dataSource = NpgsqlDataSource.Create(await TestPostgres.ConnectionStringAsync());
        await using var connection = await dataSource.OpenConnectionAsync(Ct);
        await using var transaction = await connection.BeginTransactionAsync(Ct);
        await using (var lockTable = new NpgsqlCommand("lock table ready_outage.mt_event_progression in access exclusive mode", connection, transaction))
        {
            await lockTable.ExecuteNonQueryAsync(Ct);
        }

        var response = await server.Client.GetAsync("/health/ready", Ct);
        var body = await response.Content.ReadAsStringAsync(Ct);
        await transaction.RollbackAsync(Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable, body);
        var checks = JsonDocument.Parse(body).RootElement.GetProperty("checks");
        checks.GetProperty("postgres").GetString().ShouldBe("pass");
        checks.GetProperty("projections").GetString().ShouldNotBe("pass");
    }

    /// <summary>The driver's text of a failed connection names the database's address (host:port): it is logged, and the
    /// answer says only that the check failed (it answered the driver's text).</summary>
    [Fact]
    public async Task GivenPostgresBecameUnreachable_WhenReadinessIsChecked_ThenThe503KeepsTheDriversTextOutAndLogsIt()
    {
        var (relay, connectionString) = await TcpRelay.InFrontOfTestPostgresAsync();
        await using var relayOwned = relay;
        await using var server = await ManagerServer.StartAsync("ready_unreachable", new Dictionary<string, string> { ["EventStore:ConnectionString"] = connectionString });
        (await server.Client.GetAsync("/health/ready", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        relay.Cut();
        var response = await server.Client.GetAsync("/health/ready", Ct);
        var body = await response.Content.ReadAsStringAsync(Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable, body);
        JsonDocument.Parse(body).RootElement.GetProperty("checks").GetProperty("postgres").GetString().ShouldBe("failed (the reason is logged)");
        body.ShouldNotContain(relay.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        server.Warnings.ToString().ShouldContain("/health/ready: the postgres check failed");
    }
}
