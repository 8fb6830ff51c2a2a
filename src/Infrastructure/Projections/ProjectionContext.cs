using Npgsql;

namespace Propeller.Infrastructure.Projections;

/// <summary>
/// What a projection writes through: a batch of commands sent in one round trip, in the caller's transaction (an
/// explicit one, or, when <see cref="Transaction"/> is null, the implicit transaction of the batch itself: the one-batch
/// append commits with its batch). <see cref="Schema"/> is the quoted schema of the event store.
/// </summary>
public sealed class ProjectionContext : IAsyncDisposable
{
    internal ProjectionContext(NpgsqlConnection connection, NpgsqlTransaction? transaction, string schema)
    {
        Connection = connection;
        Transaction = transaction;
        Schema = schema;
        Batch = new NpgsqlBatch(connection, transaction);
    }

    public NpgsqlConnection Connection { get; }

    public NpgsqlTransaction? Transaction { get; }

    public string Schema { get; }

    public NpgsqlBatch Batch { get; }

    private List<Action>? _committed;

    /// <summary>
    /// Runs <paramref name="action"/> once the transaction committed (never if it rolls back). Only the event store's
    /// inline appends report commits; a projection must not rely on it (it is for caches).
    /// </summary>
    public void OnCommitted(Action action) => (_committed ??= []).Add(action);

    internal void Committed()
    {
        foreach (var action in _committed ?? [])
        {
            action();
        }
    }

    /// <summary>Queues a statement with positional parameters ($1, $2, ...).</summary>
    public NpgsqlBatchCommand Add(string sql, params object?[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(value is NpgsqlParameter parameter ? parameter : new NpgsqlParameter { Value = value ?? DBNull.Value });
        }

        Batch.BatchCommands.Add(command);
        return command;
    }

    /// <summary>Runs what is queued (if anything) and empties the batch.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (Batch.BatchCommands.Count == 0)
        {
            return;
        }

        await Batch.ExecuteNonQueryAsync(cancellationToken);
        Batch.BatchCommands.Clear();
    }

    /// <summary>
    /// Runs what is queued and returns, per name in <paramref name="columns"/>, the <c>bigint</c> values of the result
    /// sets whose first column has that name (empty when none came back).
    /// </summary>
    internal async Task<Dictionary<string, List<long>>> FlushReadingAsync(string[] columns, CancellationToken cancellationToken)
    {
        var values = columns.ToDictionary(c => c, _ => new List<long>(), StringComparer.Ordinal);
        await using (var reader = await Batch.ExecuteReaderAsync(cancellationToken))
        {
            do
            {
                if (reader.FieldCount > 0 && values.TryGetValue(reader.GetName(0), out var list))
                {
                    while (await reader.ReadAsync(cancellationToken))
                    {
                        list.Add(reader.GetInt64(0));
                    }
                }
            }
            while (await reader.NextResultAsync(cancellationToken));
        }

        Batch.BatchCommands.Clear();
        return values;
    }

    public ValueTask DisposeAsync() => Batch.DisposeAsync();
}
