using Npgsql;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The advisory lock of one schema's changes (session level, on a connection of its own): taken by every node while it
/// applies Marten's schema at startup (<see cref="MartenSchemaHostedService"/>), and by a projection rebuild for its
/// whole run, so a manager that starts meanwhile waits at its schema step instead of changing the schema beside the
/// rebuild and serving from the documents the rebuild deleted.
/// </summary>
public sealed class SchemaLock : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;
    private readonly string _schema;

    private SchemaLock(NpgsqlConnection connection, string schema)
    {
        _connection = connection;
        _schema = schema;
    }

    /// <summary>The backend process of the lock's connection (not another node's connection).</summary>
    public int ProcessId => _connection.ProcessID;

    /// <summary>Waits for the lock of <paramref name="schema"/> and holds it until disposed.</summary>
    public static Task<SchemaLock> TakeAsync(NpgsqlDataSource dataSource, string schema, CancellationToken cancellationToken) =>
        TakeAsync(dataSource, schema, waiting: null, cancellationToken);

    /// <summary>
    /// Waits for the lock of <paramref name="schema"/> and holds it until disposed; <paramref name="waiting"/> is called
    /// once, before the wait, when another process holds it.
    /// </summary>
    public static async Task<SchemaLock> TakeAsync(NpgsqlDataSource dataSource, string schema, Action? waiting, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var attempt = new NpgsqlCommand("select pg_try_advisory_lock(hashtext('propeller.schema.' || $1))", connection);
            attempt.Parameters.Add(new NpgsqlParameter { Value = schema });
            if (await attempt.ExecuteScalarAsync(cancellationToken) is not true)
            {
                waiting?.Invoke();
                // No command timeout: a rebuild holds the lock for its whole run, minutes or hours. Under Npgsql's default
                // (30 s) the wait failed as a timeout, which the schema step took for PostgreSQL unreachable: a manager
                // started during a long rebuild gave up after its retries. Cancellation still ends the wait.
                await using var take = new NpgsqlCommand("select pg_advisory_lock(hashtext('propeller.schema.' || $1))", connection) { CommandTimeout = 0 };
                take.Parameters.Add(new NpgsqlParameter { Value = schema });
                await take.ExecuteNonQueryAsync(cancellationToken);
            }

            return new SchemaLock(connection, schema);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await using var release = new NpgsqlCommand("select pg_advisory_unlock(hashtext('propeller.schema.' || $1))", _connection);
            release.Parameters.Add(new NpgsqlParameter { Value = _schema });
            await release.ExecuteNonQueryAsync(CancellationToken.None);
        }
        finally
        {
            // Closing the session releases a session lock too (an unlock that failed with the connection).
            await _connection.DisposeAsync();
        }
    }
}
