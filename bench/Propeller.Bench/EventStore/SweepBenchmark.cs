using System.Diagnostics;
using System.Globalization;
using Marten;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Bench.Support;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure;
using Propeller.Infrastructure.MartenStore;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Bench.EventStore;

/// <summary>
/// `sweep`: the scheduler's sweep over a backlog of waiting tasks (no proplet to place them on), as the product reads it
/// (MartenTaskQueries.ListWaitingAsync: the keys of a page, priority first, then least recently changed) against the
/// ids of the same tasks read in pages of the same size by primary key in raw SQL (the cheapest keyset page), in one run. Each waiting
/// task holds a module of about 6 KiB (base64 in its spec), as a task created with "file" does.
/// Arguments: [waiting tasks, default 50,000] [pages read, default 50] [page size, default 100].
/// </summary>
internal static class SweepBenchmark
{
    private const string Schema = "bench_sweep";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Positional(args, 3, "[waiting tasks, default 50000] [pages read, default 50] [page size, default 100]");
        var tasks = BenchArgs.PositionalInt(args, 0, "waiting tasks", 50_000);
        var pages = BenchArgs.PositionalInt(args, 1, "pages read", 50);
        var pageSize = BenchArgs.PositionalInt(args, 2, "page size", 100);
        var connectionString = Environment.GetEnvironmentVariable("PROPELLER_TEST_DB") is { Length: > 0 } cs
            ? cs
            : "Host=127.0.0.1;Port=55432;Username=propeller;Password=propeller;Database=propeller_test";
        // The manager's connection settings (auto-prepare, generic plans): the sweep's statements run as the manager runs them.
        await using var dataSource = EventStoreServiceCollectionExtensions.CreateDataSourceBuilder(connectionString, Schema).Build();
        await using (var drop = dataSource.CreateCommand($"drop schema if exists {Schema} cascade"))
        {
            await drop.ExecuteNonQueryAsync(cancellationToken);
        }

        var options = new StoreOptions();
        MartenStoreConfiguration.Configure(options, dataSource, Schema, TaskAggregate.RegisterEvents(new EventTypeRegistry()));
        await using var store = new DocumentStore(options);
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(cancellationToken);

        var seeding = Stopwatch.StartNew();
        await SeedAsync(store, tasks, cancellationToken);
        await using (var analyze = dataSource.CreateCommand($"vacuum analyze {Schema}.mt_doc_taskstate"))
        {
            await analyze.ExecuteNonQueryAsync(cancellationToken);
        }

        Console.WriteLine(FormattableString.Invariant($"# seeded {tasks} waiting tasks in {seeding.Elapsed.TotalSeconds:F0} s"));

        // Alternated, twice each, so that neither reads a warmer cache than the other; the second pair counts.
        IWaitingTaskQueries queries = new MartenTaskQueries(store);
        double sweep = 0, reference = 0;
        for (var round = 0; round < 2; round++)
        {
            sweep = await MeasureAsync(pages, async after => await queries.ListWaitingAsync(after, pageSize, cancellationToken), cancellationToken);
            reference = await MeasureAsync(pages, async after =>
            {
                // Raw SQL, ids only, by primary key: the cheapest keyset page of waiting tasks there is.
                await using var command = dataSource.CreateCommand(
                    $"select id from {Schema}.mt_doc_taskstate where status = 'Scheduled' and id > $1 order by id limit $2");
                command.Parameters.AddWithValue(after?.Id.Value ?? Guid.Empty);
                command.Parameters.AddWithValue(pageSize);
                var keys = new List<WaitingTaskKey>(pageSize);
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    keys.Add(new WaitingTaskKey(TaskSpec.DefaultPriority, null, new TaskId(reader.GetGuid(0))));
                }

                return keys;
            }, cancellationToken);
        }

        Console.WriteLine(FormattableString.Invariant(
            $"sweep waiting={tasks} page_size={pageSize} pages={pages} sweep_ms_per_page={sweep:F2} reference_ms_per_page={reference:F2} ratio={reference / sweep:F2}"));
        return 0;
    }

    /// <summary>Milliseconds per page over <paramref name="pages"/> pages, each after the last key of the one before.</summary>
    private static async Task<double> MeasureAsync(int pages, Func<WaitingTaskKey?, Task<IReadOnlyList<WaitingTaskKey>>> read, CancellationToken cancellationToken)
    {
        WaitingTaskKey? after = null;
        var watch = Stopwatch.StartNew();
        var count = 0;
        for (; count < pages; count++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var page = await read(after);
            if (page.Count == 0)
            {
                break;
            }

            after = page[^1];
        }

        return watch.Elapsed.TotalMilliseconds / Math.Max(1, count);
    }

    private static async Task SeedAsync(DocumentStore store, int tasks, CancellationToken cancellationToken)
    {
        var module = Convert.ToBase64String([.. Enumerable.Range(0, 4608).Select(i => (byte)Random.Shared.Next(256))]);
        var start = DateTimeOffset.UtcNow.AddHours(-1);
        for (var offset = 0; offset < tasks; offset += 1000)
        {
            await using var session = store.LightweightSession();
            for (var i = offset; i < Math.Min(tasks, offset + 1000); i++)
            {
                var at = start.AddTicks(i * 137L);
                var spec = TaskSpec.Named("waiting-" + i) with { File = module, Priority = 49 + (i % 3) };
                session.Store(TaskState.Initial with
                {
                    Exists = true,
                    Id = new TaskId(Guid.CreateVersion7()),
                    Spec = spec,
                    Status = TaskStatus.Scheduled,
                    CreatedAt = at,
                    UpdatedAt = at,
                    WaitReason = "no active proplets available",
                });
            }

            await session.SaveChangesAsync(cancellationToken);
        }
    }
}
