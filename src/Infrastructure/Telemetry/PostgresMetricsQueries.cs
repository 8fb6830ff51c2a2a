using System.Data.Common;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Telemetry;
using Propeller.Infrastructure.MartenStore;

namespace Propeller.Infrastructure.Telemetry;

/// <summary>Reads the task_metrics and proplet_metrics tables (MessageTables), newest first.</summary>
public sealed class PostgresMetricsQueries(NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options) : IMetricsQueries
{
    private readonly string _schema = Sql.Identifier(options.Value.Schema);

    public Task<MetricsPage<TaskMetricsSample>> TaskMetricsAsync(Guid taskId, long offset, int limit, CancellationToken cancellationToken) =>
        PageAsync(
            "task_metrics", "task_id", taskId, "task_id, proplet_id, sampled_at, metrics::text, aggregated::text", offset, limit,
            async (reader, token) => new TaskMetricsSample(
                reader.GetGuid(0), reader.GetString(1), await reader.GetFieldValueAsync<DateTimeOffset>(2, token), reader.GetString(3),
                await reader.IsDBNullAsync(4, token) ? null : reader.GetString(4)),
            cancellationToken);

    public Task<MetricsPage<PropletMetricsSample>> PropletMetricsAsync(string propletId, long offset, int limit, CancellationToken cancellationToken) =>
        PageAsync(
            "proplet_metrics", "proplet_id", propletId, "proplet_id, namespace, sampled_at, cpu::text, memory::text", offset, limit,
            async (reader, token) => new PropletMetricsSample(
                reader.GetString(0), await reader.IsDBNullAsync(1, token) ? null : reader.GetString(1),
                await reader.GetFieldValueAsync<DateTimeOffset>(2, token), reader.GetString(3), reader.GetString(4)),
            cancellationToken);

    /// <summary>The count and one page of a table's samples for one key, in one round trip.</summary>
    private async Task<MetricsPage<T>> PageAsync<T>(
        string table, string keyColumn, object key, string columns, long offset, int limit, Func<DbDataReader, CancellationToken, Task<T>> read, CancellationToken cancellationToken)
    {
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"select count(*) from {_schema}.{table} where {keyColumn} = $1") { Parameters = { new() { Value = key } } });
        batch.BatchCommands.Add(new NpgsqlBatchCommand(
            $"select {columns} from {_schema}.{table} where {keyColumn} = $1 order by sampled_at desc, id desc offset $2 limit $3")
        {
            Parameters = { new() { Value = key }, new() { Value = offset }, new() { Value = limit } },
        });
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var total = reader.GetInt64(0);
        await reader.NextResultAsync(cancellationToken);
        var items = new List<T>();
        while (await reader.ReadAsync(cancellationToken))
        {
            items.Add(await read(reader, cancellationToken));
        }

        return new MetricsPage<T>(total, items);
    }
}
