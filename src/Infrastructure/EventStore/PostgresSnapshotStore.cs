using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure.EventStore;

/// <summary>Snapshots in the <c>snapshots</c> table: one per stream, the newest wins, another type alias is ignored.</summary>
public sealed class PostgresSnapshotStore(NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options) : ISnapshotStore
{
    private readonly string _schema = Sql.Identifier(options.Value.Schema);

    public async Task<Snapshot<TState>?> LoadAsync<TState>(string streamId, string snapshotType, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"select version, data::text from {_schema}.snapshots where stream_id = $1 and type = $2");
        command.Parameters.AddWithValue(streamId);
        command.Parameters.AddWithValue(snapshotType);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        var state = EventSerializer.DeserializeState<TState>(reader.GetString(1));
        return state is null ? null : new Snapshot<TState>(state, reader.GetInt64(0));
    }

    public async Task SaveAsync<TState>(string streamId, string snapshotType, long version, TState state, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"""
            insert into {_schema}.snapshots (stream_id, type, version, data) values ($1, $2, $3, $4::jsonb)
            on conflict (stream_id) do update set type = excluded.type, version = excluded.version, data = excluded.data, created_at = now()
             where {_schema}.snapshots.version < excluded.version or {_schema}.snapshots.type <> excluded.type
            """);
        command.Parameters.AddWithValue(streamId);
        command.Parameters.AddWithValue(snapshotType);
        command.Parameters.AddWithValue(version);
        command.Parameters.AddWithValue(EventSerializer.SerializeState(state));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
