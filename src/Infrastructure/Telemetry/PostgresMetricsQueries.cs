using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Telemetry;
using Propeller.Infrastructure.EventStore;

namespace Propeller.Infrastructure.Telemetry;

/// <summary>Reads the task_metrics and proplet_metrics tables (migration 3), newest first.</summary>
public sealed class PostgresMetricsQueries(NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options) : IMetricsQueries
{
    private readonly string _schema = Sql.Identifier(options.Value.Schema);

    public async Task<MetricsPage<TaskMetricsSample>> TaskMetricsAsync(Guid taskId, long offset, int limit, CancellationToken cancellationToken)
    {
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"select count(*) from {_schema}.task_metrics where task_id = $1") { Parameters = { new() { Value = taskId } } });
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"""
            select task_id, proplet_id, sampled_at, metrics::text, aggregated::text from {_schema}.task_metrics
             where task_id = $1 order by sampled_at desc, id desc offset $2 limit $3
            """)
        {
            Parameters = { new() { Value = taskId }, new() { Value = offset }, new() { Value = limit } },
        });
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var total = reader.GetInt64(0);
        await reader.NextResultAsync(cancellationToken);
        var items = new List<TaskMetricsSample>();
        while (await reader.ReadAsync(cancellationToken))
        {
            items.Add(new TaskMetricsSample(
                reader.GetGuid(0), reader.GetString(1), await reader.GetFieldValueAsync<DateTimeOffset>(2, cancellationToken), reader.GetString(3),
                await reader.IsDBNullAsync(4, cancellationToken) ? null : reader.GetString(4)));
        }

        return new MetricsPage<TaskMetricsSample>(total, items);
    }

    public async Task<MetricsPage<PropletMetricsSample>> PropletMetricsAsync(string propletId, long offset, int limit, CancellationToken cancellationToken)
    {
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"select count(*) from {_schema}.proplet_metrics where proplet_id = $1") { Parameters = { new() { Value = propletId } } });
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"""
            select proplet_id, namespace, sampled_at, cpu::text, memory::text from {_schema}.proplet_metrics
             where proplet_id = $1 order by sampled_at desc, id desc offset $2 limit $3
            """)
        {
            Parameters = { new() { Value = propletId }, new() { Value = offset }, new() { Value = limit } },
        });
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var total = reader.GetInt64(0);
        await reader.NextResultAsync(cancellationToken);
        var items = new List<PropletMetricsSample>();
        while (await reader.ReadAsync(cancellationToken))
        {
            items.Add(new PropletMetricsSample(
                reader.GetString(0), await reader.IsDBNullAsync(1, cancellationToken) ? null : reader.GetString(1),
                await reader.GetFieldValueAsync<DateTimeOffset>(2, cancellationToken), reader.GetString(3), reader.GetString(4)));
        }

        return new MetricsPage<PropletMetricsSample>(total, items);
    }
}
