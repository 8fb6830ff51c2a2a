using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Infrastructure.MartenStore;

namespace Propeller.Infrastructure.Telemetry;

/// <summary>How long the proplets' telemetry samples are kept (MANAGER_METRICS_RETENTION), and how they are pruned.</summary>
public sealed class MetricsRetentionOptions
{
    /// <summary>Samples received longer ago than this are deleted; zero keeps them for ever.</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often a prune runs (the first a minute after start).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Rows per DELETE, so that no prune holds a long transaction or a large lock.</summary>
    public int Batch { get; set; } = 10_000;
}

/// <summary>
/// Deletes the telemetry samples (<c>task_metrics</c>, <c>proplet_metrics</c>) received before the retention, in
/// batches: every proplet sends one sample per metrics interval and one per running task per profile interval, so the
/// tables grew without end (100 proplets at the 10 s default: 864,000 rows a day before any task metrics). Rows are
/// found by their id, which grows with <c>received_at</c> (both set at insert): the prune reads the first id received
/// after the cut once, then deletes below it through the primary key, so no index of its own slows every insert.
/// Several manager nodes may prune at once: a row deleted twice is deleted once.
/// </summary>
public sealed partial class MetricsRetention(
    NpgsqlDataSource dataSource, IOptions<EventStoreOptions> storeOptions, IOptions<MetricsRetentionOptions> options, TimeProvider time, ILogger<MetricsRetention> logger)
    : BackgroundService
{
    private readonly string _schema = Sql.Identifier(storeOptions.Value.Schema);

    /// <summary>Deletes what was received before <paramref name="cut"/> from both tables; returns how many rows went.</summary>
    public async Task<long> PruneAsync(DateTimeOffset cut, CancellationToken cancellationToken)
    {
        var deleted = 0L;
        foreach (var table in new[] { "task_metrics", "proplet_metrics" })
        {
            var name = $"{_schema}.{table}";
            long? boundary;
            await using (var first = dataSource.CreateCommand($"select coalesce((select id from {name} where received_at >= $1 order by id limit 1), (select max(id) + 1 from {name}))"))
            {
                first.Parameters.AddWithValue(cut.ToUniversalTime());
                boundary = await first.ExecuteScalarAsync(cancellationToken) as long?;
            }

            if (boundary is not { } below)
            {
                continue;
            }

            while (true)
            {
                // The ids as an array, each deleted through the primary key (as PluginJobStore.PruneAsync does: "id in
                // (select …)" may become a hash join against a scan of the whole table).
                await using var delete = dataSource.CreateCommand($"delete from {name} where id = any(array(select id from {name} where id < $1 order by id limit $2))");
                delete.Parameters.AddWithValue(below);
                delete.Parameters.AddWithValue(options.Value.Batch);
                var rows = await delete.ExecuteNonQueryAsync(cancellationToken);
                deleted += rows;
                if (rows < options.Value.Batch)
                {
                    break;
                }
            }
        }

        return deleted;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (settings.Retention <= TimeSpan.Zero)
        {
            return;
        }

        try
        {
            await Task.Delay(TimeSpan.FromMinutes(1), time, stoppingToken);
            using var timer = new PeriodicTimer(settings.Interval, time);
            do
            {
                try
                {
                    var deleted = await PruneAsync(time.GetUtcNow() - settings.Retention, stoppingToken);
                    if (deleted > 0)
                    {
                        LogPruned(logger, deleted, settings.Retention);
                    }
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
                {
                    // PostgreSQL away or restarting: the next round tries again.
                    LogFailed(logger, e.Message, settings.Interval);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "Deleted {Count} telemetry samples received more than {Retention} ago (MANAGER_METRICS_RETENTION)")]
    private static partial void LogPruned(ILogger logger, long count, TimeSpan retention);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "Pruning old telemetry samples failed ({Reason}); trying again in {Interval}")]
    private static partial void LogFailed(ILogger logger, string reason, TimeSpan interval);
}
