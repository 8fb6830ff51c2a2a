using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Marten;
using Npgsql;
using Propeller.Application;
using Propeller.Application.Aggregates;
using Propeller.Infrastructure.MartenStore;
using Propeller.Tests.Shared;

namespace Propeller.Infrastructure.Tests.Support;

/// <summary>
/// A real PostgreSQL (the shared TestPostgres: a container where Docker answers, else scripts/infra.sh's) with one schema
/// per test class, dropped and created again by Marten before each test (not after, so a failure leaves its evidence),
/// and the event store port, snapshots and a command helper on Marten (ADR 0010). No fallback: unreachable = failure.
/// </summary>
internal sealed class TestDatabase : IAsyncDisposable
{
    private TestDatabase(string schema, string connectionString, NpgsqlDataSource dataSource, DocumentStore marten, IOptions<EventStoreOptions> options)
    {
        ConnectionString = connectionString;
        Schema = schema;
        DataSource = dataSource;
        Options = options;
        Marten = marten;
        Registry = DomainEvents.CreateRegistry();
        Serializer = new Propeller.Infrastructure.Serialization.EventSerializer(Registry);
        Store = new MartenEventStore(marten, dataSource, options, Registry);
        Loader = new AggregateLoader(Store);
        Commands = new StreamCommands(Store, Loader);
    }

    /// <summary>The shared test server's (tests/Shared/TestPostgres.cs).</summary>
    public string ConnectionString { get; }

    public string Schema { get; }

    public string Quoted => "\"" + Schema + "\"";

    public NpgsqlDataSource DataSource { get; }

    public IOptions<EventStoreOptions> Options { get; }

    public DocumentStore Marten { get; }

    public Propeller.Application.EventStore.EventTypeRegistry Registry { get; }

    /// <summary>The stored JSON shape (the history contract).</summary>
    public Propeller.Infrastructure.Serialization.EventSerializer Serializer { get; }

    public MartenEventStore Store { get; }

    public AggregateLoader Loader { get; }

    public StreamCommands Commands { get; }

    /// <summary>Marten configured as the manager configures it (<see cref="MartenStoreConfiguration"/>), in <paramref name="schema"/>, its schema applied.</summary>
    public static async Task<TestDatabase> CreateAsync(string schema, Action<EventStoreOptions>? configure = null)
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

        var settings = new EventStoreOptions { ConnectionString = connectionString, Schema = schema };
        configure?.Invoke(settings);
        var marten = NewMarten(dataSource, schema);
        await marten.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(ct);
        return new TestDatabase(schema, connectionString, dataSource, marten, Microsoft.Extensions.Options.Options.Create(settings));
    }

    /// <summary>Another Marten store as the manager configures it (another node, or another schema), not applied.</summary>
    public static DocumentStore NewMarten(NpgsqlDataSource dataSource, string schema)
    {
        var options = new StoreOptions();
        MartenStoreConfiguration.Configure(options, dataSource, schema, DomainEvents.CreateRegistry());
        return new DocumentStore(options);
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

    public ValueTask DisposeAsync()
    {
        Marten.Dispose();
        return DataSource.DisposeAsync();
    }
}
