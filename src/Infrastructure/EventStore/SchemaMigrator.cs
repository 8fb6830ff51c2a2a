using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Propeller.Infrastructure.EventStore;

/// <summary>
/// Creates or migrates the event store schema at startup: idempotent, versioned, and safe when several nodes start at
/// once (a transaction-scoped advisory lock per schema serialises them; the later ones find nothing to do).
/// PostgreSQL unreachable → retried with backoff, each attempt logged with the setting to check, then a clear failure.
/// </summary>
public sealed class SchemaMigrator(NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options, ILogger<SchemaMigrator> logger)
{
    private readonly EventStoreOptions _options = options.Value;

    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        var delay = _options.StartupRetryDelay;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await MigrateOnceAsync(cancellationToken);
                return;
            }
            catch (Exception ex) when (IsUnreachable(ex) && attempt < _options.StartupAttempts && !cancellationToken.IsCancellationRequested)
            {
                EventStoreLog.DatabaseUnreachable(logger, Describe(), _options.ConnectionSettingName, attempt, _options.StartupAttempts, delay, ex.Message);
                await Task.Delay(delay, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
            catch (Exception ex) when (IsUnreachable(ex))
            {
                throw new EventStoreUnavailableException(
                    $"PostgreSQL at {Describe()} is unreachable after {attempt} attempts; check {_options.ConnectionSettingName}: {ex.Message}", ex);
            }
        }
    }

    private async Task MigrateOnceAsync(CancellationToken cancellationToken)
    {
        var schema = Sql.Identifier(_options.Schema);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand("select pg_advisory_xact_lock(hashtext('propeller.schema.' || $1))", connection, transaction))
        {
            lockCommand.Parameters.AddWithValue(_options.Schema);
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }

        await ExecuteAsync(connection, transaction, $"""
            create schema if not exists {schema};
            create table if not exists {schema}.schema_migrations (
                version     integer primary key,
                description text not null,
                applied_at  timestamptz not null default now());
            """, cancellationToken);

        var applied = new HashSet<int>();
        await using (var read = new NpgsqlCommand($"select version from {schema}.schema_migrations", connection, transaction))
        await using (var reader = await read.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                applied.Add(reader.GetInt32(0));
            }
        }

        foreach (var (version, description, sql) in Migrations.All)
        {
            if (applied.Contains(version))
            {
                continue;
            }

            await ExecuteAsync(connection, transaction, sql.Replace("{schema}", schema, StringComparison.Ordinal), cancellationToken);
            await using var record = new NpgsqlCommand($"insert into {schema}.schema_migrations (version, description) values ($1, $2)", connection, transaction);
            record.Parameters.AddWithValue(version);
            record.Parameters.AddWithValue(description);
            await record.ExecuteNonQueryAsync(cancellationToken);
            EventStoreLog.MigrationApplied(logger, _options.Schema, version, description);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private string Describe()
    {
        var builder = new NpgsqlConnectionStringBuilder(_options.ConnectionString);
        return $"{builder.Host}:{builder.Port}";
    }

    private static bool IsUnreachable(Exception ex) => ex switch
    {
        NpgsqlException { InnerException: SocketException or TimeoutException or IOException } => true,
        SocketException => true,
        PostgresException pg => pg.SqlState is "57P03" or "53300", // starting up / too many connections
        _ => false,
    };
}
