using System.Diagnostics;
using System.Globalization;
using JasperFx.Events;
using Marten;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Bench.Support;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Bench.EventStore;

/// <summary>
/// `eventstore`: appends through the product's event store port on Marten and through Marten directly (Quick, Rich, and
/// Quick with several streams per session) vs. a raw INSERT of the identical rows (same JSON, same batching, same
/// concurrency, autocommit) into a plain table, in one run against the same PostgreSQL; then an async projection
/// rebuild over every event with Marten's daemon.
/// </summary>
internal static class EventStoreBenchmark
{
    private const string Schema = "bench_eventstore";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Positional(args, 1, "[scale, default 1.0]");
        var scale = args.Length > 0 ? BenchArgs.ParseDouble("scale", args[0]) : 1.0;
        foreach (var (batch, writers) in Cases)
        {
            // A case with no timed call would print a rate of 0 and ratios of 0/0 as if measured.
            if (CallsPerWriter(batch, writers, scale) / StreamsPerSession == 0)
            {
                throw new BenchUsageException(FormattableString.Invariant(
                    $"scale {args[0]}: too small, case b{batch}_w{writers} would make no timed call (each writer needs at least {StreamsPerSession} batches of {batch})"));
            }
        }

        var connectionString = Environment.GetEnvironmentVariable("PROPELLER_TEST_DB") is { Length: > 0 } cs
            ? cs
            : "Host=127.0.0.1;Port=55432;Username=propeller;Password=propeller;Database=propeller_test";
        // The manager's connection settings (no reset on close, auto-prepare, generic plans), and a pool for the writers.
        var builder = EventStoreServiceCollectionExtensions.CreateDataSourceBuilder(connectionString, Schema);
        builder.ConnectionStringBuilder.MaxPoolSize = 32;
        await using var dataSource = builder.Build();

        await ExecuteAsync(dataSource, $"drop schema if exists {Schema} cascade", cancellationToken);
        await ExecuteAsync(dataSource, $"""
            create schema {Schema};
            create table {Schema}.raw_events (
                seq bigint generated always as identity primary key, id uuid not null, stream_id text not null, version bigint not null,
                type text not null, data jsonb not null, metadata jsonb not null, created_at timestamptz not null)
            """, cancellationToken);

        // Marten 9.62 in its own schemas: Quick (the product's mode) and Rich append modes, directly; and the product's
        // event store port on the Quick one (MartenEventStore: validation, metadata, group commit of concurrent appends).
        var registry = TaskAggregate.RegisterEvents(new EventTypeRegistry());
        await using var quick = await MartenStoreAsync(dataSource, QuickSchema, EventAppendMode.QuickWithServerTimestamps, registry, cancellationToken);
        await using var rich = await MartenStoreAsync(dataSource, RichSchema, EventAppendMode.Rich, registry, cancellationToken);
        var port = new MartenEventStore(quick, dataSource, Options.Create(new EventStoreOptions { ConnectionString = connectionString, Schema = QuickSchema }), registry);

        var martenTotal = 0L;
        foreach (var (batch, writers) in Cases)
        {
            var perWriter = CallsPerWriter(batch, writers, scale);
            var streams = Enumerable.Range(0, writers).Select(_ => Enumerable.Range(0, 16).Select(_ => Guid.CreateVersion7()).ToArray()).ToArray();
            var raw = await MeasureAsync(writers, perWriter, batch, 1, (w, i, payload) => RawInsertAsync(dataSource, w, i, batch, payload, cancellationToken), cancellationToken);
            var ours = await MeasureAsync(writers, perWriter, batch, 1, (w, i, payload) => port.AppendAsync($"bench-b{batch}w{writers}-{w}-{Slot(i)}", "task", ExpectedVersion.Any, payload, EventMetadata.At(DateTimeOffset.UtcNow), cancellationToken), cancellationToken);
            var martenQuick = await MeasureAsync(writers, perWriter, batch, 1, (w, i, payload) => MartenAppendAsync(quick, streams[w], i, 1, payload, cancellationToken), cancellationToken);
            var martenRich = await MeasureAsync(writers, perWriter, batch, 1, (w, i, payload) => MartenAppendAsync(rich, streams[w], i, 1, payload, cancellationToken), cancellationToken);

            // Several streams per session, as the product can batch them (a scheduler round, a batch of results).
            var martenQuick4 = await MeasureAsync(writers, perWriter / StreamsPerSession, batch, StreamsPerSession, (w, i, payload) => MartenAppendAsync(quick, streams[w], i, StreamsPerSession, payload, cancellationToken), cancellationToken);
            martenTotal += (2 * ((long)perWriter + 1) * writers * batch) + (((long)(perWriter / StreamsPerSession) + 1) * writers * batch * StreamsPerSession);
            Console.WriteLine(FormattableString.Invariant(
                $"eventstore case=b{batch}_w{writers} raw_rows_per_s={raw:F0} port={ours:F0} ratio={ours / raw:F2} marten_quick={martenQuick:F0} ratio={martenQuick / raw:F2} marten_rich={martenRich:F0} ratio={martenRich / raw:F2} marten_quick_{StreamsPerSession}streams_per_session={martenQuick4:F0} ratio={martenQuick4 / raw:F2}"));
        }

        var martenApplied = 0L;
        // Marten's defaults, then bigger pages, then bigger pages with deferred writes (one write per stream per
        // flush window instead of one per page: RebuildFlushThreshold, rebuild mode only).
        foreach (var (label, batchSize, flushThreshold) in new[] { ("default", 0, 0), ("batch_5000", 5000, 0), ("batch_5000_deferred_writes", 5000, 10_000) })
        {
            (var seconds, martenApplied) = await MartenRebuildAsync(dataSource, registry, batchSize, flushThreshold, cancellationToken);
            Console.WriteLine(FormattableString.Invariant($"eventstore case=projection_rebuild store=marten options={label} events={martenApplied} events_per_s={martenApplied / seconds:F0}"));
        }

        if (martenApplied != martenTotal)
        {
            throw new BenchFailedException($"the projection rebuild applied {martenApplied} events, but {martenTotal} were appended to the Quick schema");
        }

        return 0;
    }

    /// <summary>The cases: (events per append, concurrent writers).</summary>
    private static readonly (int Batch, int Writers)[] Cases = [(1, 1), (10, 1), (1, 8), (10, 8)];

    /// <summary>Timed appends per writer in a case: 24,000 single events or 80,000 in batches, times the scale.</summary>
    private static int CallsPerWriter(int batch, int writers, double scale) => (int)((batch == 1 ? 24_000 : 80_000) * scale) / writers / batch;

    private const string QuickSchema = Schema + "_marten_quick";
    private const string RichSchema = Schema + "_marten_rich";
    private const int StreamsPerSession = 4;

    private static int Slot(int i) => ((i % 16) + 16) % 16;

    private static async Task<DocumentStore> MartenStoreAsync(NpgsqlDataSource dataSource, string schema, EventAppendMode mode, EventTypeRegistry registry, CancellationToken cancellationToken)
    {
        await ExecuteAsync(dataSource, $"drop schema if exists {schema} cascade", cancellationToken);
        var options = new StoreOptions();
        MartenStoreConfiguration.Configure(options, dataSource, schema, registry, mode, stateProjections: false);
        var store = new DocumentStore(options);
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(cancellationToken);
        return store;
    }

    /// <summary>One session, <paramref name="streamCount"/> streams (consecutive slots), one SaveChanges.</summary>
    private static async Task MartenAppendAsync(DocumentStore store, Guid[] streams, int index, int streamCount, IReadOnlyList<object> payload, CancellationToken cancellationToken)
    {
        await using var session = store.LightweightSession();
        for (var k = 0; k < streamCount; k++)
        {
            session.Events.Append(streams[Slot((index * streamCount) + k)], payload);
        }

        await session.SaveChangesAsync(cancellationToken);
    }

    /// <summary>Rebuilds the stream summary over every event of the Quick schema with Marten's async daemon.</summary>
    private static async Task<(double Seconds, long Events)> MartenRebuildAsync(
        NpgsqlDataSource dataSource, EventTypeRegistry registry, int batchSize, int flushThreshold, CancellationToken cancellationToken)
    {
        var options = new StoreOptions();
        MartenStoreConfiguration.Configure(options, dataSource, QuickSchema, registry, stateProjections: false);
        options.Projections.Add(new StreamSummaryMartenProjection(), JasperFx.Events.Projections.ProjectionLifecycle.Async, o =>
        {
            if (batchSize > 0)
            {
                o.BatchSize = batchSize;
                o.MaximumHopperSize = batchSize * 4;
            }

            o.RebuildFlushThreshold = flushThreshold;
        });
        await using var store = new DocumentStore(options);
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(cancellationToken);
        using var daemon = await store.BuildProjectionDaemonAsync();
        var stopwatch = Stopwatch.StartNew();
        await daemon.RebuildProjectionAsync("stream_summary", TimeSpan.FromMinutes(10), cancellationToken);
        stopwatch.Stop();
        await using var session = store.QuerySession();
        var events = await session.Query<StreamSummary>().SumAsync(x => x.Events, cancellationToken);
        return (stopwatch.Elapsed.TotalSeconds, events);
    }

    /// <summary>Events per second: each writer calls <paramref name="append"/> <paramref name="callsPerWriter"/> times, each call writing <paramref name="appendsPerCall"/> × <paramref name="batch"/> events.</summary>
    private static async Task<double> MeasureAsync(int writers, int callsPerWriter, int batch, int appendsPerCall, Func<int, int, IReadOnlyList<object>, Task> append, CancellationToken cancellationToken)
    {
        var payloads = Enumerable.Range(0, writers)
            .Select(w => Enumerable.Range(0, batch).Select(i => (object)new TaskEvent.TaskStartRequested(new TaskId(Guid.CreateVersion7()), i + 1, DateTimeOffset.UtcNow)).ToArray())
            .ToArray();

        // Warm-up outside the clock: connections, prepared plans, JIT.
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => append(w, -1 - w, payloads[w])));
        var stopwatch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < callsPerWriter; i++)
            {
                await append(w, i, payloads[w]);
            }
        }, cancellationToken)));
        stopwatch.Stop();
        return (double)writers * callsPerWriter * appendsPerCall * batch / stopwatch.Elapsed.TotalSeconds;
    }

    private static readonly EventSerializer RawSerializer = new(TaskAggregate.RegisterEvents(new EventTypeRegistry()));

    private static async Task RawInsertAsync(NpgsqlDataSource dataSource, int writer, int index, int batch, IReadOnlyList<object> payload, CancellationToken cancellationToken)
    {
        // The identical row content the store writes: same ids, JSON bodies, metadata, one statement per batch.
        var ids = new Guid[batch];
        var types = new string[batch];
        var data = new string[batch];
        var metadata = new string[batch];
        var meta = EventSerializer.SerializeMetadata(EventMetadata.At(DateTimeOffset.UtcNow));
        for (var i = 0; i < batch; i++)
        {
            (types[i], data[i]) = RawSerializer.Serialize(payload[i]);
            ids[i] = Guid.CreateVersion7();
            metadata[i] = meta;
        }

        await using var command = dataSource.CreateCommand($"""
            insert into {Schema}.raw_events (id, stream_id, version, type, data, metadata, created_at)
            select u.id, $1, $2 + u.ord, u.t, u.d, u.m, $7
              from unnest($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]) with ordinality as u (id, t, d, m, ord)
            """);
        command.Parameters.AddWithValue($"raw-{writer}-{index % 16}");
        command.Parameters.AddWithValue((long)index * batch);
        command.Parameters.AddWithValue(ids);
        command.Parameters.AddWithValue(types);
        command.Parameters.Add(new NpgsqlParameter { Value = data, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        command.Parameters.Add(new NpgsqlParameter { Value = metadata, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        command.Parameters.AddWithValue(DateTimeOffset.UtcNow);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task ExecuteAsync(NpgsqlDataSource dataSource, string sql, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
