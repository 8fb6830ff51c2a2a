using Marten;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Tests.Support;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>
/// The schema at startup (issue 14): Marten's tables and ours (telemetry) applied by the hosted service,
/// idempotently, by several nodes at once; PostgreSQL unreachable is retried, logged and then a clear failure.
/// </summary>
public sealed class MartenSchemaTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("marten_schema");

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private MartenSchemaHostedService Service(IDocumentStore store, ListLogger<MartenSchemaHostedService>? logger = null) =>
        new(store, _db.DataSource, _db.Options, logger ?? new ListLogger<MartenSchemaHostedService>());

    [Fact]
    public async Task NodesStartingAtOnce_OnAFreshSchema_AllSucceed_WithEveryTable()
    {
        await _db.ExecuteAsync($"drop schema {_db.Quoted} cascade");
        var stores = Enumerable.Range(0, 4).Select(_ => TestDatabase.NewMarten(_db.DataSource, _db.Schema)).ToArray();
        try
        {
            await Task.WhenAll(stores.Select(s => Task.Run(() => Service(s).StartAsync(Ct), Ct)));
        }
        finally
        {
            foreach (var store in stores)
            {
                await store.DisposeAsync();
            }
        }

        var tables = await _db.ScalarAsync<string>(
            "select string_agg(table_name, ',' order by table_name) from information_schema.tables where table_schema = $1 and table_name in ('mt_events', 'mt_streams', 'task_metrics', 'proplet_metrics', 'mt_doc_taskstate', 'mt_doc_taskmodule')",
            _db.Schema);
        // mt_doc_taskmodule too: the module projection's documents were created by the first large-module create, inside a request.
        tables.ShouldBe("mt_doc_taskmodule,mt_doc_taskstate,mt_events,mt_streams,proplet_metrics,task_metrics");
    }

    [Fact]
    public async Task ApplyingAgain_OnAnExistingSchema_ChangesNothing_AndKeepsTheRows()
    {
        await _db.ExecuteAsync("insert into {schema}.proplet_metrics (proplet_id, sampled_at, cpu, memory) values ('p', now(), '{}'::jsonb, '{}'::jsonb)");
        var logger = new ListLogger<MartenSchemaHostedService>();

        await Service(_db.Marten, logger).StartAsync(Ct);
        using (var store = TestDatabase.NewMarten(_db.DataSource, _db.Schema))
        {
            var migration = await store.Storage.Database.CreateMigrationAsync(Ct);
            var ddl = new StringWriter();
            migration.WriteAllUpdates(ddl, new Weasel.Postgresql.PostgresqlMigrator(), JasperFx.AutoCreate.CreateOrUpdate);
            migration.Difference.ShouldBe(Weasel.Core.SchemaPatchDifference.None, customMessage: ddl.ToString());
        }

        (await _db.ScalarAsync<long>("select count(*) from {schema}.proplet_metrics")).ShouldBe(1);
        logger.Lines.ShouldContain(l => l.Contains("schema applied", StringComparison.Ordinal));
    }

    [Fact]
    public async Task PostgresDownAtStartup_RetriesWithLogLinesNamingTheSetting_ThenFailsClearly()
    {
        var settings = new EventStoreOptions
        {
            ConnectionString = "Host=127.0.0.1;Port=1;Username=x;Password=y;Database=z;Timeout=2",
            Schema = "unreachable",
            StartupAttempts = 3,
            StartupRetryDelay = TimeSpan.FromMilliseconds(10),
        };
        await using var dataSource = NpgsqlDataSource.Create(settings.ConnectionString);
        using var store = TestDatabase.NewMarten(dataSource, settings.Schema);
        var logger = new ListLogger<MartenSchemaHostedService>();

        var ex = await Should.ThrowAsync<EventStoreUnavailableException>(() => new MartenSchemaHostedService(store, dataSource, Options.Create(settings), logger).StartAsync(Ct));

        ex.Message.ShouldContain("127.0.0.1:1");
        ex.Message.ShouldContain("MANAGER_POSTGRES_HOST");
        logger.Lines.Count.ShouldBe(2);
        logger.Lines.ShouldAllBe(l => l.Contains("MANAGER_POSTGRES_HOST") && l.StartsWith("Warning"));
    }

    /// <summary>
    /// A node starting while another process holds the schema's lock (a projection rebuild holds it for its whole run)
    /// waits for it however long, saying so once, and starts after its release. The wait ran under the connection's
    /// command timeout (Npgsql's 30 s by default), which read as PostgreSQL unreachable: after its retries a manager
    /// started during a long rebuild gave up.
    /// </summary>
    [Fact]
    public async Task ANodeStartingWhileTheSchemaLockIsHeld_WaitsBeyondTheCommandTimeout_AndStartsAfterItsRelease()
    {
        var builder = new NpgsqlConnectionStringBuilder(_db.ConnectionString) { CommandTimeout = 1 };
        await using var dataSource = NpgsqlDataSource.Create(builder.ConnectionString);
        using var store = TestDatabase.NewMarten(dataSource, _db.Schema);
        var logger = new ListLogger<MartenSchemaHostedService>();
        var service = new MartenSchemaHostedService(store, dataSource, _db.Options, logger);

        Task start;
        await using (await SchemaLock.TakeAsync(_db.DataSource, _db.Schema, Ct))
        {
            start = service.StartAsync(Ct);
            await TestDatabase.WaitUntilAsync(() => Task.FromResult(logger.Lines.Any(l => l.Contains("Waiting for the schema lock", StringComparison.Ordinal))));
            // Held three times the command timeout: the wait outlasts it.
            await Task.Delay(TimeSpan.FromSeconds(3), Ct);
            start.IsCompleted.ShouldBeFalse();
        }

        await start.WaitAsync(TimeSpan.FromMinutes(1), Ct);
        logger.Lines.ShouldNotContain(l => l.Contains("unreachable", StringComparison.Ordinal));
        logger.Lines.Count(l => l.Contains("Waiting for the schema lock", StringComparison.Ordinal)).ShouldBe(1);
        logger.Lines.ShouldContain(l => l.Contains("schema applied", StringComparison.Ordinal));
    }

    /// <summary>
    /// A stop while a node waits for the schema's lock ends the wait as a cancellation, not as PostgreSQL unavailable
    /// (the cancelled statement carries PostgreSQL's 57014).
    /// </summary>
    [Fact]
    public async Task AStopWhileWaitingForTheSchemaLock_EndsTheStartAsCancelled()
    {
        var logger = new ListLogger<MartenSchemaHostedService>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        await using (await SchemaLock.TakeAsync(_db.DataSource, _db.Schema, Ct))
        {
            var start = Service(_db.Marten, logger).StartAsync(stop.Token);
            await TestDatabase.WaitUntilAsync(() => Task.FromResult(logger.Lines.Any(l => l.Contains("Waiting for the schema lock", StringComparison.Ordinal))));
            await stop.CancelAsync();
            await Should.ThrowAsync<OperationCanceledException>(() => start);
        }

        logger.Lines.ShouldNotContain(l => l.Contains("unreachable", StringComparison.Ordinal));
    }

    /// <summary>
    /// A database restarting under the schema's application at startup (a failover: the server ends the connection with
    /// 57P01 admin_shutdown or 57P02 crash_shutdown) is waited for like one not up yet; these stopped the manager at
    /// once. A refusal of the statement itself (no rights) still stops it with its message.
    /// </summary>
    [Theory]
    [InlineData("57P01", true)]
    [InlineData("57P02", true)]
    [InlineData("57P03", true)]
    [InlineData("53300", true)]
    [InlineData("42501", false)]
    public void ADatabaseShuttingDownOrRestartingAtStartup_IsWaitedFor(string sqlState, bool waited) =>
        MartenSchemaHostedService.IsUnreachable(new InvalidOperationException("wrapped", new PostgresException("message", "FATAL", "FATAL", sqlState))).ShouldBe(waited);
}
