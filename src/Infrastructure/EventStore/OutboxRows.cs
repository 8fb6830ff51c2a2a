using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Infrastructure.Projections;

namespace Propeller.Infrastructure.EventStore;

/// <summary>What an append writes beside its events, in its transaction: inline views, outbox rows, inbox receipt (both stores share this).</summary>
internal static class OutboxRows
{
    /// <summary>One append's share of a transaction: its stored events, outbox messages and inbox receipt.</summary>
    public sealed record AppendRows(StoredEvent[] Stored, IReadOnlyList<OutgoingMessage> Outbox, InboxReceipt? Received);

    /// <summary>
    /// Writes the inline projections' rows for <paramref name="stored"/>, the inbox receipt and the outbox rows on
    /// <paramref name="transaction"/> in one round trip, commits, tells the projections, and returns the outbox ids.
    /// </summary>
    public static async Task<IReadOnlyList<long>> WriteAndCommitAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, IReadOnlyList<IProjection> inline, StoredEvent[] stored,
        IReadOnlyList<OutgoingMessage> outbox, InboxReceipt? received, CancellationToken cancellationToken) =>
        (await WriteAndCommitAsync(connection, transaction, schema, inline, [new AppendRows(stored, outbox, received)], cancellationToken))[0];

    /// <summary>
    /// Writes the rows of several appends (one transaction's group) in one round trip, commits, tells the projections,
    /// and returns each append's outbox ids, in order.
    /// </summary>
    public static async Task<IReadOnlyList<long>[]> WriteAndCommitAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, IReadOnlyList<IProjection> inline, IReadOnlyList<AppendRows> appends,
        CancellationToken cancellationToken)
    {
        var outboxIds = new IReadOnlyList<long>[appends.Count];
        Array.Fill(outboxIds, []);
        var context = new ProjectionContext(connection, transaction, schema);
        await using (context)
        {
            foreach (var append in appends)
            {
                foreach (var projection in inline)
                {
                    var matching = projection.EventTypes is null ? append.Stored : [.. append.Stored.Where(e => projection.EventTypes.Contains(e.Type))];
                    if (matching.Length > 0)
                    {
                        await projection.ApplyAsync(context, matching, cancellationToken);
                    }
                }

                AddReceipt(context, schema, append.Received);
                AddOutbox(context, schema, append.Outbox);
            }

            if (appends.All(a => a.Outbox.Count == 0))
            {
                await context.FlushAsync(cancellationToken);
            }
            else
            {
                var read = (await context.FlushReadingAsync(["outbox_id"], cancellationToken))["outbox_id"];
                var taken = 0;
                for (var i = 0; i < appends.Count; i++)
                {
                    if (appends[i].Outbox.Count > 0)
                    {
                        outboxIds[i] = read.GetRange(taken, appends[i].Outbox.Count);
                        taken += appends[i].Outbox.Count;
                    }
                }
            }
        }

        await transaction.CommitAsync(cancellationToken);
        context.Committed();
        return outboxIds;
    }

    /// <summary>
    /// Records a handled message in the inbox; a row already there (stored by an earlier version before it was
    /// handled, or a redelivery) is marked handled.
    /// </summary>
    public static void AddReceipt(ProjectionContext context, string schema, InboxReceipt? received)
    {
        if (received is not null)
        {
            context.Add(
                $"insert into {schema}.inbox (message_key, topic, payload, handled_at) values ($1, $2, $3, now()) on conflict (message_key) do update set handled_at = now()",
                received.Key, received.Topic, received.Payload.ToArray());
        }
    }

    public static void AddOutbox(ProjectionContext context, string schema, IReadOnlyList<OutgoingMessage> outbox)
    {
        if (outbox.Count == 0)
        {
            return;
        }

        // The outbox rows' ids come back (in message order) for the after-commit publish.
        context.Add(
            $"insert into {schema}.outbox (destination, payload, headers) select d, p, h from unnest($1::text[], $2::bytea[], $3::jsonb[]) with ordinality as m(d, p, h, n) order by n returning id as outbox_id",
            outbox.Select(m => m.Destination).ToArray(),
            outbox.Select(m => m.Payload.ToArray()).ToArray(),
            outbox.Select(m => m.Headers is null ? null : System.Text.Json.JsonSerializer.Serialize(m.Headers)).ToArray());
    }
}
