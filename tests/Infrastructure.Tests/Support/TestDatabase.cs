using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure.Tests.Support;

/// <summary>
/// A real PostgreSQL (PROPELLER_TEST_DB, started by scripts/test.sh) with one schema per test class, dropped and
/// migrated again before each test (not after, so a failure leaves its evidence). No fallback: unreachable = failure.
/// </summary>
internal sealed class TestDatabase : IAsyncDisposable
{
    public const string DefaultConnectionString = "Host=127.0.0.1;Port=55432;Username=propeller;Password=propeller;Database=propeller_test";

    private TestDatabase(string schema, NpgsqlDataSource dataSource, ProjectionCatalog catalog, Action<EventStoreOptions>? configure)
    {
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

    public static string ConnectionString => Environment.GetEnvironmentVariable("PROPELLER_TEST_DB") is { Length: > 0 } value ? value : DefaultConnectionString;

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
        var builder = new NpgsqlDataSourceBuilder(ConnectionString);
        builder.ConnectionStringBuilder.MaxPoolSize = 60;
        var dataSource = builder.Build();
        await using (var drop = dataSource.CreateCommand($"drop schema if exists \"{schema}\" cascade"))
        {
            await drop.ExecuteNonQueryAsync(ct);
        }

        var catalog = new ProjectionCatalog();
        projections?.Invoke(catalog);
        var database = new TestDatabase(schema, dataSource, catalog, configure);
        await database.Migrator().MigrateAsync(ct);
        return database;
    }

    public SchemaMigrator Migrator(ILogger<SchemaMigrator>? logger = null) =>
        new(DataSource, Options, logger ?? NullLogger<SchemaMigrator>.Instance);

    public ProjectionDaemon Daemon(Action<ProjectionDaemonOptions>? configure = null)
    {
        var options = new ProjectionDaemonOptions { PollInterval = TimeSpan.FromMilliseconds(20), RetryDelay = TimeSpan.FromMilliseconds(10), LeaseRetryInterval = TimeSpan.FromMilliseconds(100) };
        configure?.Invoke(options);
        return new ProjectionDaemon(DataSource, Store, Catalog, Options, Microsoft.Extensions.Options.Options.Create(options), TimeProvider.System, NullLogger<ProjectionDaemon>.Instance);
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
