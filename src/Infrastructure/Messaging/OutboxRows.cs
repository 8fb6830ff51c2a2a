using Npgsql;
using Propeller.Application.Messaging;

namespace Propeller.Infrastructure.Messaging;

/// <summary>
/// What an append writes beside its events, in its transaction: the inbox receipt and the outbox rows (Marten's session
/// has written the events and the inline views on the same transaction just before).
/// </summary>
internal static class OutboxRows
{
    /// <summary>One append's share of a transaction: its outbox messages and inbox receipt.</summary>
    public sealed record AppendRows(IReadOnlyList<OutgoingMessage> Outbox, InboxReceipt? Received);

    /// <summary>
    /// Writes the rows of several appends (one transaction's group) in one round trip and commits; returns each
    /// append's outbox ids, in order (for the relay's after-commit publish).
    /// </summary>
    public static async Task<IReadOnlyList<long>[]> WriteAndCommitAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, IReadOnlyList<AppendRows> appends, CancellationToken cancellationToken)
    {
        var outboxIds = new IReadOnlyList<long>[appends.Count];
        Array.Fill(outboxIds, []);
        await using (var batch = new NpgsqlBatch(connection, transaction))
        {
            foreach (var append in appends)
            {
                AddReceipt(batch, schema, append.Received);
                AddOutbox(batch, schema, append.Outbox);
            }

            if (appends.All(a => a.Outbox.Count == 0))
            {
                if (batch.BatchCommands.Count > 0)
                {
                    await batch.ExecuteNonQueryAsync(cancellationToken);
                }
            }
            else
            {
                // The outbox inserts' result sets come back in append order (told apart by their column's name).
                var owners = Enumerable.Range(0, appends.Count).Where(i => appends[i].Outbox.Count > 0).GetEnumerator();
                await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
                do
                {
                    if (reader.FieldCount > 0 && reader.GetName(0) == "outbox_id" && owners.MoveNext())
                    {
                        var ids = new List<long>(appends[owners.Current].Outbox.Count);
                        while (await reader.ReadAsync(cancellationToken))
                        {
                            ids.Add(reader.GetInt64(0));
                        }

                        outboxIds[owners.Current] = ids;
                    }
                }
                while (await reader.NextResultAsync(cancellationToken));
            }
        }

        await transaction.CommitAsync(cancellationToken);
        return outboxIds;
    }

    /// <summary>
    /// Records a handled message in the inbox; a row already there (stored by an earlier version before it was
    /// handled, or a redelivery) is marked handled.
    /// </summary>
    private static void AddReceipt(NpgsqlBatch batch, string schema, InboxReceipt? received)
    {
        if (received is not null)
        {
            Add(
                batch,
                $"insert into {schema}.inbox (message_key, topic, payload, handled_at) values ($1, $2, $3, now()) on conflict (message_key) do update set handled_at = now()",
                received.Key, received.Topic, received.Payload.ToArray());
        }
    }

    /// <summary>The outbox rows, their ids returned in message order.</summary>
    private static void AddOutbox(NpgsqlBatch batch, string schema, IReadOnlyList<OutgoingMessage> outbox)
    {
        if (outbox.Count > 0)
        {
            Add(
                batch,
                $"insert into {schema}.outbox (destination, payload, headers) select d, p, h from unnest($1::text[], $2::bytea[], $3::jsonb[]) with ordinality as m(d, p, h, n) order by n returning id as outbox_id",
                outbox.Select(m => m.Destination).ToArray(),
                outbox.Select(m => m.Payload.ToArray()).ToArray(),
                outbox.Select(m => m.Headers is null ? null : System.Text.Json.JsonSerializer.Serialize(m.Headers)).ToArray());
        }
    }

    private static void Add(NpgsqlBatch batch, string sql, params object?[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value ?? DBNull.Value });
        }

        batch.BatchCommands.Add(command);
    }
}
