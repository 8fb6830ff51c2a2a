using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Marten;
using Npgsql;
using Propeller.Application;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Serialization;
using Propeller.Tests.Shared;

namespace Propeller.Infrastructure.Tests.Support;

/// <summary>
/// A real PostgreSQL (the shared TestPostgres: a container where Docker answers, else scripts/infra.sh's) with one schema per test class, dropped and
/// migrated again before each test (not after, so a failure leaves its evidence). No fallback: unreachable = failure.
/// </summary>
internal sealed class TestDatabase : IAsyncDisposable
{
    private TestDatabase(string schema, string connectionString, NpgsqlDataSource dataSource, ProjectionCatalog catalog, Action<EventStoreOptions>? configure)
    {
        ConnectionString = connectionString;
        Schema = schema;
        DataSource = dataSource;
        Catalog = catalog;
        var options = new EventStoreOptions { ConnectionString = ConnectionString, Schema = schema };
        configure?.Invoke(options);
        Options = Microsoft.Extensions.Options.Options.Create(options);
        Registry = DomainEvents.CreateRegistry();
        Serializer = new EventSerializer(Registry);
        Store = new PostgresEventStore(dataSource, Serializer, catalog, Options, NullLogger<PostgresEventStore>.Instance);
        Snapshots = new PostgresSnapshotStore(dataSource, Options);
        Loader = new AggregateLoader(Store, Snapshots);
        Commands = new CommandHandler(Store, Loader, Snapshots, NullLogger<CommandHandler>.Instance);
    }

    /// <summary>The shared test server's (tests/Shared/TestPostgres.cs).</summary>
    public string ConnectionString { get; }

    public string Schema { get; }

    public string Quoted => "\"" + Schema + "\"";

    public NpgsqlDataSource DataSource { get; }

    public ProjectionCatalog Catalog { get; }

    public IOptions<EventStoreOptions> Options { get; }

    public EventTypeRegistry Registry { get; }

    public EventSerializer Serializer { get; }

    public PostgresEventStore Store { get; }

    public PostgresSnapshotStore Snapshots { get; }

    public AggregateLoader Loader { get; }

    public CommandHandler Commands { get; }

    public static async Task<TestDatabase> CreateAsync(string schema, Action<ProjectionCatalog>? projections = null, Action<EventStoreOptions>? configure = null)
    {
        var ct = TestContext.Current.CancellationToken;
        var connectionString = await TestPostgres.ConnectionStringAsync();
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        builder.ConnectionStringBuilder.MaxPoolSize = 60;
        var dataSource = builder.Build();
        await using (var drop = dataSource.CreateCommand($"drop schema if exists \"{schema}\" cascade"))
        {
            await drop.ExecuteNonQueryAsync(ct);
        }

        var catalog = new ProjectionCatalog();
        projections?.Invoke(catalog);
        var database = new TestDatabase(schema, connectionString, dataSource, catalog, configure);
        await database.Migrator().MigrateAsync(ct);
        return database;
    }

    /// <summary>
    /// Marten in this class's schema (ADR 0010), its schema applied, and the event store port on it; the inline views
    /// of <see cref="Catalog"/> run in its appends' transactions.
    /// </summary>
    public async Task<(DocumentStore Marten, MartenEventStore Store)> MartenAsync()
    {
        var options = new StoreOptions();
        MartenStoreConfiguration.Configure(options, DataSource, Schema, Registry);
        var marten = new DocumentStore(options);
        await marten.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(TestContext.Current.CancellationToken);
        return (marten, new MartenEventStore(marten, DataSource, Catalog, Options));
    }

    public SchemaMigrator Migrator(ILogger<SchemaMigrator>? logger = null) =>
        new(DataSource, Options, logger ?? NullLogger<SchemaMigrator>.Instance);

    public ProjectionDaemon Daemon(Action<ProjectionDaemonOptions>? configure = null)
    {
        var options = new ProjectionDaemonOptions { PollInterval = TimeSpan.FromMilliseconds(20), RetryDelay = TimeSpan.FromMilliseconds(10), LeaseRetryInterval = TimeSpan.FromMilliseconds(100) };
        configure?.Invoke(options);
        return new ProjectionDaemon(DataSource, Store, Catalog, Options, Microsoft.Extensions.Options.Options.Create(options), TimeProvider.System, NullLogger<ProjectionDaemon>.Instance);
    }

    /// <summary>Polls <paramref name="condition"/> until it holds (at most 10 s): for a lock another session is waiting on.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!await condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, "timed out waiting for the blocked append");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }

    public async Task<T> ScalarAsync<T>(string sql, params object[] values)
    {
        await using var command = DataSource.CreateCommand(sql.Replace("{schema}", Quoted, StringComparison.Ordinal));
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        return (T)(await command.ExecuteScalarAsync(TestContext.Current.CancellationToken))!;
    }

    public async Task ExecuteAsync(string sql, params object[] values)
    {
        await using var command = DataSource.CreateCommand(sql.Replace("{schema}", Quoted, StringComparison.Ordinal));
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    public ValueTask DisposeAsync() => DataSource.DisposeAsync();
}
