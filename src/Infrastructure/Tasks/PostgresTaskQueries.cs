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

    public async Task<TaskList> ListAsync(long offset, int limit, TaskListFilter filter, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(filter);

        // The conditions' parameters come first ($1..$n) in both statements; the page adds offset and limit after them.
        var conditions = new List<string>();
        var values = new List<NpgsqlParameter>();
        void Add(string condition, object value, NpgsqlDbType type)
        {
            values.Add(new NpgsqlParameter { Value = value, NpgsqlDbType = type });
            conditions.Add(condition.Replace("?", "$" + values.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
        }

        if (filter.Metadata is not null)
        {
            Add("metadata @> ?::jsonb", filter.Metadata, NpgsqlDbType.Text);
        }

        if (filter.Status is { } status)
        {
            Add("state = ?", (int)status, NpgsqlDbType.Integer);
        }

        if (filter.Name is { Length: > 0 } name)
        {
            // A part of the name, case-insensitive; LIKE's wildcards in the input are taken literally.
            Add("name ilike '%' || ? || '%'", name.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal), NpgsqlDbType.Text);
        }

        if (filter.PropletId is { Length: > 0 } proplet)
        {
            Add("proplet_id = ?", proplet, NpgsqlDbType.Text);
        }

        var where = conditions.Count == 0 ? "" : " where " + string.Join(" and ", conditions);
        var order = filter.NewestFirst ? "created_at desc, id desc" : "created_at, id";
        var n = values.Count;
        await using var batch = dataSource.CreateBatch();
        var count = new NpgsqlBatchCommand($"select count(*) from {_schema}.task_view{where}");
        var page = new NpgsqlBatchCommand($"select doc::text from {_schema}.task_view{where} order by {order} offset ${n + 1} limit ${n + 2}");
        foreach (var value in values)
        {
            count.Parameters.Add(value.Clone());
            page.Parameters.Add(value.Clone());
        }

        page.Parameters.AddWithValue(offset);
        page.Parameters.AddWithValue(limit);

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
