using System.Net.Sockets;
using Marten;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// Applies Marten's schema (event tables, append function, projected documents, and our outbox, inbox and telemetry
/// tables) at startup, so no request pays for it. Several nodes starting at once are serialised by the schema's
/// advisory lock (<see cref="SchemaLock"/>), which a projection rebuild holds for its whole run: a node waits for it as
/// long as it takes, saying so once. PostgreSQL unreachable: retried with backoff, each attempt logged with the setting
/// to check, then a clear failure; any other failure stops the host with a message naming the schema and the cause.
/// </summary>
internal sealed class MartenSchemaHostedService(IDocumentStore store, NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options, ILogger<MartenSchemaHostedService> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var delay = settings.StartupRetryDelay;
        var told = false;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await ApplyAsync(settings.Schema, () =>
                {
                    if (!told)
                    {
                        told = true;
                        MartenLog.SchemaLockWaiting(logger, settings.Schema);
                    }
                }, cancellationToken);
                break;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // A stop while waiting for the lock: Npgsql's cancelled statement carries PostgreSQL's 57014, which
                // would otherwise read as PostgreSQL unavailable.
                throw;
            }
            catch (Exception ex) when (IsUnreachable(ex) && attempt < settings.StartupAttempts && !cancellationToken.IsCancellationRequested)
            {
                MartenLog.DatabaseUnreachable(logger, Describe(settings), settings.ConnectionSettingName, attempt, settings.StartupAttempts, delay, ex.Message);
                await Task.Delay(delay, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
            catch (Exception ex) when (IsUnreachable(ex))
            {
                throw new EventStoreUnavailableException(
                    $"PostgreSQL at {Describe(settings)} is unreachable after {attempt} attempts; check {settings.ConnectionSettingName}: {ex.Message}", ex);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                throw new EventStoreUnavailableException(
                    $"Marten's event store schema could not be applied to schema '{settings.Schema}' (check {settings.ConnectionSettingName} and the database user's rights): {ex.Message}", ex);
            }
        }

        MartenLog.SchemaApplied(logger, settings.Schema);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Applies the schema holding an advisory lock of this schema's: Weasel's DDL is not safe against itself (two nodes
    /// creating the schema at once failed on Marten's functions), so the later nodes wait and then find nothing to do.
    /// </summary>
    private async Task ApplyAsync(string schema, Action waiting, CancellationToken cancellationToken)
    {
        await using var held = await SchemaLock.TakeAsync(dataSource, schema, waiting, cancellationToken);
        var apply = store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        try
        {
            await apply.WaitAsync(cancellationToken);
        }
        finally
        {
            // A stop while the changes run does not stop them (Weasel runs them on connections of its own): the lock is
            // held until they end, or another node would change the schema beside them.
            await Task.WhenAny(apply);
        }

        await using var carry = dataSource.CreateCommand(PropletLiveness.CarryOverSql(Sql.Identifier(schema)));
        await carry.ExecuteNonQueryAsync(cancellationToken);
    }

    private static string Describe(EventStoreOptions settings)
    {
        var builder = new NpgsqlConnectionStringBuilder(settings.ConnectionString);
        return $"{builder.Host}:{builder.Port}";
    }

    /// <summary>Whether <paramref name="ex"/> (or what it wraps: Weasel wraps the driver's errors) says PostgreSQL is not
    /// there yet or cannot be used now (<see cref="PostgresFailures.IsUnavailable"/>): unreachable, starting up, shutting
    /// down or restarting under the connection (a failover: 57P01, 57P02; these stopped the host at once), out of
    /// connection slots.</summary>
    internal static bool IsUnreachable(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (e is SocketException)
            {
                return true;
            }
        }

        return PostgresFailures.IsUnavailable(ex);
    }
}
