using Npgsql;
using Propeller.Tests.Shared;

namespace Propeller.Infrastructure.Tests.Storage;

/// <summary>The manager's connection pool (<see cref="EventStoreServiceCollectionExtensions.CreateDataSourceBuilder"/>), on
/// a real PostgreSQL.</summary>
public sealed class ConnectionPoolTests
{
    /// <summary>
    /// A connection that goes back to the pool leaves no session state behind: Wolverine takes session-level advisory
    /// locks (its leader election, its durability pass) and renames its lock connection (<c>application_name</c>) on
    /// connections of this pool, and an unlock that timed out left the lock held by a pooled connection (no node could
    /// become leader again) and the name on connections reused for everything. The pool resets connections (Npgsql's
    /// reset keeps auto-prepared statements); before, it did not (No Reset On Close).
    /// </summary>
    [Fact]
    public async Task GivenSessionStateLeftOnAConnection_WhenThePoolHandsItOutAgain_ThenItIsGone()
    {
        var ct = TestContext.Current.CancellationToken;
        var builder = EventStoreServiceCollectionExtensions.CreateDataSourceBuilder(await TestPostgres.ConnectionStringAsync(), "pool_reset");
        builder.ConnectionStringBuilder.MaxPoolSize = 1;
        await using var dataSource = builder.Build();

        int pid;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            await using var command = new NpgsqlCommand("select pg_advisory_lock(4242), set_config('application_name', 'wolverine-advisory-lock:test', false), pg_backend_pid()", connection);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            pid = reader.GetInt32(2);
        }

        await using (var again = await dataSource.OpenConnectionAsync(ct))
        {
            await using var command = new NpgsqlCommand(
                "select pg_backend_pid(), current_setting('application_name'), (select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid())", again);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            reader.GetInt32(0).ShouldBe(pid, "the pool's one connection");
            (reader.GetString(1), reader.GetInt64(2)).ShouldBe((builder.ConnectionStringBuilder.ApplicationName, 0L));
        }
    }
}
