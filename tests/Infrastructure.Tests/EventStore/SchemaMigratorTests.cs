using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.Tests.Support;

namespace Propeller.Infrastructure.Tests.EventStore;

public sealed class SchemaMigratorTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("es_migrate");

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Migrate_IsIdempotent()
    {
        await _db.Migrator().MigrateAsync(Ct);
        await _db.Migrator().MigrateAsync(Ct);

        (await _db.ScalarAsync<long>("select count(*) from {schema}.schema_migrations")).ShouldBe(Migrations.All.Count);
    }

    [Fact]
    public async Task OlderSchema_IsUpgradedToTheLatestVersion()
    {
        await _db.ExecuteAsync("drop table {schema}.outbox, {schema}.inbox, {schema}.task_metrics, {schema}.proplet_metrics; drop function {schema}.lock_streams(text[]); delete from {schema}.schema_migrations where version >= 2");

        await _db.Migrator().MigrateAsync(Ct);

        (await _db.ScalarAsync<int>("select max(version) from {schema}.schema_migrations")).ShouldBe(Migrations.All[^1].Version);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.outbox")).ShouldBe(0);
    }

    [Fact]
    public async Task NodesStartingAtOnce_OnAFreshSchema_AllSucceed_AndMigrateOnce()
    {
        await _db.ExecuteAsync($"drop schema {_db.Quoted} cascade");

        await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Task.Run(() => _db.Migrator().MigrateAsync(Ct), Ct)));

        (await _db.ScalarAsync<long>("select count(*) from {schema}.schema_migrations")).ShouldBe(Migrations.All.Count);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.events")).ShouldBe(0);
    }

    [Fact]
    public async Task PostgresDownAtStartup_RetriesWithLogLinesNamingTheSetting_ThenFailsClearly()
    {
        var options = Options.Create(new EventStoreOptions
        {
            ConnectionString = "Host=127.0.0.1;Port=1;Username=x;Password=y;Database=z;Timeout=2",
            Schema = "unreachable",
            StartupAttempts = 3,
            StartupRetryDelay = TimeSpan.FromMilliseconds(10),
        });
        await using var dataSource = NpgsqlDataSource.Create(options.Value.ConnectionString);
        var logger = new ListLogger<SchemaMigrator>();

        var ex = await Should.ThrowAsync<EventStoreUnavailableException>(() => new SchemaMigrator(dataSource, options, logger).MigrateAsync(Ct));

        ex.Message.ShouldContain("127.0.0.1:1");
        ex.Message.ShouldContain("MANAGER_POSTGRES_HOST");
        logger.Lines.Count.ShouldBe(2);
        logger.Lines.ShouldAllBe(l => l.Contains("MANAGER_POSTGRES_HOST") && l.StartsWith("Warning"));
    }
}
