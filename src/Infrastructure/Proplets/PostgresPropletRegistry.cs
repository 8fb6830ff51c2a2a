using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Proplets;
using Propeller.Domain.Proplets;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure.Proplets;

/// <summary>Reads the proplet view, with running-task counts taken from the task view (so they cannot drift).</summary>
public sealed class PostgresPropletRegistry(NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options) : IPropletRegistry
{
    private const int AliveHistoryLength = 10;

    private readonly string _schema = Sql.Identifier(options.Value.Schema);

    private string SelectSql => $"""
        select p.id, p.name, p.metadata::text, p.offline, p.last_alive_at, p.alive_history,
               (select count(*) from {_schema}.task_view t where t.proplet_id = p.id and t.state = 2)::int
          from {_schema}.proplet_view p
        """;

    public async Task<PropletView?> GetAsync(PropletId id, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(SelectSql + " where p.id = $1");
        command.Parameters.AddWithValue(id.Value);
        var views = await ReadAsync(command, cancellationToken);
        return views.Count == 0 ? null : views[0];
    }

    public async Task<IReadOnlyList<PropletView>> ListAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(SelectSql + " order by p.name, p.id");
        return await ReadAsync(command, cancellationToken);
    }

    public async Task<bool?> RecordHeartbeatAsync(PropletId id, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"""
            update {_schema}.proplet_view
               set last_alive_at = greatest(last_alive_at, $2),
                   alive_history = (alive_history || $2)[greatest(1, cardinality(alive_history) + 2 - $3):]
             where id = $1
            returning offline
            """);
        command.Parameters.AddWithValue(id.Value);
        command.Parameters.AddWithValue(at);
        command.Parameters.AddWithValue(AliveHistoryLength);
        return await command.ExecuteScalarAsync(cancellationToken) is bool offline ? offline : null;
    }

    private static async Task<List<PropletView>> ReadAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        var views = new List<PropletView>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            views.Add(new PropletView(
                new PropletId(reader.GetString(0)),
                reader.GetString(1),
                EventSerializer.DeserializeState<PropletMetadata>(reader.GetString(2)) ?? PropletMetadata.Empty,
                reader.GetBoolean(3),
                await reader.IsDBNullAsync(4, cancellationToken) ? null : await reader.GetFieldValueAsync<DateTimeOffset>(4, cancellationToken),
                await reader.GetFieldValueAsync<DateTimeOffset[]>(5, cancellationToken),
                reader.GetInt32(6)));
        }

        return views;
    }
}
