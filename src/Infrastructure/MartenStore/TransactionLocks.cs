using Marten;
using Npgsql;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// PostgreSQL advisory locks held by a Marten session's transaction: taken now (the session starts its transaction
/// if it has none, so its later reads and its commit run on the same connection) and released by PostgreSQL when that
/// transaction commits or rolls back. Named per schema (<c>hashtext(schema.name)</c>), so two event stores on one
/// database never wait for each other. Shared holders run side by side; an exclusive holder waits for them and keeps
/// new ones waiting until it commits (PostgreSQL queues a shared request behind a waiting exclusive one).
/// </summary>
public static class TransactionLocks
{
    /// <summary>Waits for <paramref name="name"/> in exclusive mode, held until the session's transaction ends.</summary>
    public static Task TakeExclusiveAsync(IDocumentSession session, string name, CancellationToken cancellationToken) =>
        TakeAsync(session, name, "pg_advisory_xact_lock", cancellationToken);

    /// <summary>Waits for <paramref name="name"/> in shared mode, held until the session's transaction ends.</summary>
    public static Task TakeSharedAsync(IDocumentSession session, string name, CancellationToken cancellationToken) =>
        TakeAsync(session, name, "pg_advisory_xact_lock_shared", cancellationToken);

    private static async Task TakeAsync(IDocumentSession session, string name, string function, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentException.ThrowIfNullOrEmpty(name);
        await session.BeginTransactionAsync(cancellationToken);
        var connection = session.Connection ?? throw new InvalidOperationException("the Marten session has no connection after starting its transaction");

        // Npgsql runs a command in its connection's open transaction.
        await using var command = new NpgsqlCommand($"select {function}(hashtext($1))", connection);
        command.Parameters.AddWithValue(session.DocumentStore.Options.DatabaseSchemaName + "." + name);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
