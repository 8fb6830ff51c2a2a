using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure.Tasks;

/// <summary>Reads the task_view projection.</summary>
public sealed class PostgresTaskQueries(NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options) : ITaskQueries
{
    private readonly string _schema = Sql.Identifier(options.Value.Schema);

    public async Task<TaskState?> GetAsync(TaskId id, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"select doc::text from {_schema}.task_view where id = $1");
        command.Parameters.AddWithValue(id.Value);
        return await command.ExecuteScalarAsync(cancellationToken) is string json ? EventSerializer.DeserializeState<TaskState>(json) : null;
    }

    public async Task<IReadOnlyList<TaskState>> ListScheduledAsync(int limit, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"""
            select doc::text from {_schema}.task_view where state = 1
             order by (doc -> 'spec' ->> 'priority')::int desc, doc ->> 'updated_at', id limit $1
            """);
        command.Parameters.AddWithValue(limit);
        return await ReadStatesAsync(command, cancellationToken);
    }

    public async Task<IReadOnlyList<TaskState>> ListRunningOnAsync(string propletId, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"select doc::text from {_schema}.task_view where state = 2 and proplet_id = $1 order by id");
        command.Parameters.AddWithValue(propletId);
        return await ReadStatesAsync(command, cancellationToken);
    }

    private static async Task<List<TaskState>> ReadStatesAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        var tasks = new List<TaskState>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            tasks.Add(EventSerializer.DeserializeState<TaskState>(reader.GetString(0))!);
        }

        return tasks;
    }

    public async Task<TaskList> ListAsync(long offset, int limit, string? metadataFilter, CancellationToken cancellationToken)
    {
        var where = metadataFilter is null ? "" : " where metadata @> $3::jsonb";
        await using var batch = dataSource.CreateBatch();
        var count = new NpgsqlBatchCommand($"select count(*) from {_schema}.task_view{where.Replace("$3", "$1", StringComparison.Ordinal)}");
        var page = new NpgsqlBatchCommand($"select doc::text from {_schema}.task_view{where} order by created_at, id offset $1 limit $2");
        page.Parameters.AddWithValue(offset);
        page.Parameters.AddWithValue(limit);
        if (metadataFilter is not null)
        {
            count.Parameters.Add(new NpgsqlParameter { Value = metadataFilter, NpgsqlDbType = NpgsqlDbType.Text });
            page.Parameters.Add(new NpgsqlParameter { Value = metadataFilter, NpgsqlDbType = NpgsqlDbType.Text });
        }

        batch.BatchCommands.Add(count);
        batch.BatchCommands.Add(page);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var total = reader.GetInt64(0);
        await reader.NextResultAsync(cancellationToken);
        var tasks = new List<TaskState>();
        while (await reader.ReadAsync(cancellationToken))
        {
            tasks.Add(EventSerializer.DeserializeState<TaskState>(reader.GetString(0))!);
        }

        return new TaskList(total, tasks);
    }
}
