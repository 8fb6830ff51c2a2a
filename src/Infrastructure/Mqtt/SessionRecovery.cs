using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Broker;
using Propeller.Infrastructure.MartenStore;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Recovers the broker session of a manager node that is gone (killed, or stopped and not started again), so that what
/// the broker keeps for it is handled by a live node instead of waiting for it for the session's 7 days.
/// <para>
/// Why: each node has a persistent session under its entity id. With a share group (MANAGER_MQTT_SHARE_GROUP) the
/// broker keeps giving a node that is down its turn of the results, discovery and metrics (mosquitto 2.0 queues them in
/// the offline session instead of passing them to another member), so without this the tasks whose results were queued
/// there stay Running until that node returns. Without a group the session only collects copies of what every node
/// receives, and broker memory.
/// </para>
/// <para>
/// How: every node marks its session alive in <c>mqtt_sessions</c> every fifth of
/// <see cref="MqttBridgeOptions.SessionStaleTimeout"/>, also while it recovers another's. A session not marked for that long is claimed by one live node
/// (an UPDATE of its row: the claim is the row's, so two nodes never recover one session at once; a claim older than
/// <see cref="ClaimTimeout"/> may be taken again, for a node that died while recovering). That node connects with the
/// gone node's client id and no clean start (the broker hands it the session, and the messages queued in it), removes
/// the session's subscriptions (so nothing new is queued there), hands what arrives to the <see cref="InboundHandler"/>
/// like its own messages (acknowledged once committed; a result another node decided already is recorded as ignored),
/// and once nothing has arrived for <see cref="QuietPeriod"/>, ends the session (MQTT 5: DISCONNECT with a session expiry
/// of one second) and deletes the row. The gone node's share of the group's messages then goes to the live members.
/// A session that does not go quiet within <see cref="MqttBridgeOptions.SessionMaxDrain"/> (a backlog larger than a drain
/// handles, or a handler held up) is never ended: ending it would drop what it still holds, and what is being handled
/// (the handler is cancelled, its messages not acknowledged). The borrowed connection disconnects keeping the session,
/// the claim is given up, and the next round drains it further.
/// </para>
/// <para>
/// When the node comes back while its session is being recovered, its connect takes the session back (the broker closes
/// the borrowed connection, which does not reconnect: <see cref="BrokerOptions.ReconnectAfterLoss"/>), its next mark clears
/// the claim, and the session stays its own; under MQTT 5 the session is never ended under a node that came back, because
/// the ending is sent on the borrowed connection itself. The borrowed connection uses the gone node's client id as
/// username and this node's MANAGER_API_KEY as password (docs/operations.md: a broker with per-client credentials must
/// let the nodes use each other's ids).
/// </para>
/// </summary>
internal sealed partial class SessionRecovery(
    ManagerMqtt mqtt, InboundHandler handler, NpgsqlDataSource dataSource, IOptions<EventStoreOptions> storeOptions,
    TimeProvider time, ILoggerFactory loggers) : BackgroundService
{
    /// <summary>How long the borrowed connection must receive nothing before the session is taken as drained.</summary>
    internal static readonly TimeSpan QuietPeriod = TimeSpan.FromSeconds(1);

    /// <summary>A claim this old belongs to a node that died while recovering; another node may take it.</summary>
    internal static readonly TimeSpan ClaimTimeout = TimeSpan.FromMinutes(3);

    private static readonly Meter Meter = new("Propeller.Inbound");
    private static readonly Counter<long> Recovered =
        Meter.CreateCounter<long>("mqtt_sessions_recovered", "{session}", "Broker sessions of gone manager nodes drained and ended by this node");
    private static readonly Counter<long> RecoveredMessages =
        Meter.CreateCounter<long>("mqtt_session_messages_recovered", "{message}", "Messages found in gone nodes' broker sessions and handled by this node");

    private readonly string _table = Sql.Identifier(storeOptions.Value.Schema) + ".mqtt_sessions";
    private readonly ILogger _logger = loggers.CreateLogger<SessionRecovery>();

    /// <summary>Tests only: runs on the borrowed connection of a drained session just before it is ended.</summary>
    internal Func<BrokerConnection, Task>? BeforeEndSession { get; set; }

    /// <summary>How often a node marks its session alive (and looks for sessions to recover): a fifth of the stale timeout.</summary>
    private TimeSpan MarkInterval => TimeSpan.FromTicks(Math.Max(mqtt.Options.SessionStaleTimeout.Ticks / 5, TimeSpan.FromMilliseconds(100).Ticks));

    /// <summary>Marks this node's session alive and, beside that, recovers gone nodes' sessions, each every
    /// <see cref="MarkInterval"/>. The marks go on while a recovery drains (up to SessionMaxDrain, several back to back):
    /// waiting for it, this node's own session went unmarked past the stale timeout, and another node claimed it and took
    /// it from this node's live connection (a reconnect; what was published for this node in between lost, a Last Will).</summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(MarkEveryIntervalAsync(mqtt.Options.EntityId, stoppingToken), RecoverEveryIntervalAsync(stoppingToken));

    private async Task MarkEveryIntervalAsync(string entityId, CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(MarkInterval, time);
        try
        {
            do
            {
                try
                {
                    await MarkAliveAsync(entityId, stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    // Whatever failed, the marks go on: a loop ended by an unforeseen error would leave this node's live
                    // session to be claimed by the others while the recoveries beside it run on.
                    Log.RoundFailed(_logger, ex);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }

    /// <summary>Claims and recovers gone nodes' sessions, from one interval after the start (this node marked first).</summary>
    private async Task RecoverEveryIntervalAsync(CancellationToken stoppingToken)
    {
        var options = mqtt.Options;
        using var timer = new PeriodicTimer(MarkInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    while (!stoppingToken.IsCancellationRequested && await ClaimAsync(options.EntityId, options.SessionStaleTimeout, stoppingToken) is { } gone)
                    {
                        bool finished;
                        try
                        {
                            finished = await RecoverAsync(gone, stoppingToken);
                        }
                        catch
                        {
                            // Let another round (here or on another node) try at once rather than after the claim timeout.
                            await ReleaseAsync(gone, options.EntityId);
                            throw;
                        }

                        if (!finished)
                        {
                            await ReleaseAsync(gone, options.EntityId);
                            break; // the next round takes it up again (here or on another node), after the others
                        }
                    }
                }
                catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException or MQTTnet.Exceptions.MqttCommunicationException
                    || (ex is OperationCanceledException && !stoppingToken.IsCancellationRequested))
                {
                    Log.RoundFailed(_logger, ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }

    /// <summary>This node's session is alive; a claim on it (this node came back while another recovered it) is void.</summary>
    private async Task MarkAliveAsync(string clientId, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"""
            insert into {_table} (client_id, seen) values ($1, now())
            on conflict (client_id) do update set seen = now(), claimed_by = null, claimed_at = null
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = clientId });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Claims the longest unseen session not marked for the stale timeout (and not claimed by a live recovery).</summary>
    private async Task<string?> ClaimAsync(string self, TimeSpan stale, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"""
            update {_table} set claimed_by = $1, claimed_at = now()
            where client_id = (
                select client_id from {_table}
                where client_id <> $1 and seen < now() - $2 and (claimed_at is null or claimed_at < now() - $3)
                order by seen limit 1 for update skip locked)
            returning client_id
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = self });
        command.Parameters.Add(new NpgsqlParameter { Value = stale });
        command.Parameters.Add(new NpgsqlParameter { Value = ClaimTimeout });
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <summary>Gives up this node's claim at once or, with <paramref name="lapseAfter"/>, lets it lapse that long from now
    /// instead of at the claim timeout (best effort: an error leaves it to expire).</summary>
    private async Task ReleaseAsync(string clientId, string self, TimeSpan? lapseAfter = null)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await using var command = dataSource.CreateCommand(lapseAfter is null
                ? $"update {_table} set claimed_by = null, claimed_at = null where client_id = $1 and claimed_by = $2"
                : $"update {_table} set claimed_at = now() - $3 + $4 where client_id = $1 and claimed_by = $2");
            command.Parameters.Add(new NpgsqlParameter { Value = clientId });
            command.Parameters.Add(new NpgsqlParameter { Value = self });
            if (lapseAfter is { } after)
            {
                command.Parameters.Add(new NpgsqlParameter { Value = ClaimTimeout });
                command.Parameters.Add(new NpgsqlParameter { Value = after });
            }

            await command.ExecuteNonQueryAsync(timeout.Token);
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            Log.RoundFailed(_logger, ex);
        }
    }

    /// <summary>Drains and ends one gone node's session: true when done (or taken back by its node), false when the drain
    /// was cut at <see cref="MqttBridgeOptions.SessionMaxDrain"/> and the session left to a later round.</summary>
    private async Task<bool> RecoverAsync(string clientId, CancellationToken cancellationToken)
    {
        var self = mqtt.Options.EntityId;
        Log.Recovering(_logger, clientId);
        var borrowed = ManagerMqtt.SessionOptions(mqtt.Options, clientId);
        borrowed.ReconnectAfterLoss = false;
        // The group's filters and their stale forms name everything a node of this deployment may have subscribed (the
        // plain forms, the group's, the suggested group's, {base}/#). No Subscriptions: the connect finds the session and
        // removes these, so nothing new is queued in it.
        var (filters, stale) = ManagerMqtt.Filters(mqtt.Options.BaseTopic, mqtt.Options.ShareGroup);
        foreach (var filter in filters.Concat(stale))
        {
            borrowed.StaleSubscriptions.Add(filter);
        }

        var handle = handler.Guarded(_logger);
        var received = 0;
        var busy = 0;
        var last = time.GetTimestamp();
        await using var connection = new BrokerConnection(borrowed, loggers.CreateLogger<BrokerConnection>(), time)
        {
            Handler = async (messages, token) =>
            {
                Interlocked.Increment(ref busy);
                try
                {
                    await handle(messages, token);
                }
                finally
                {
                    Interlocked.Add(ref received, messages.Count);
                    Interlocked.Exchange(ref last, time.GetTimestamp());
                    Interlocked.Decrement(ref busy);
                }
            },
        };

        using (var connecting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            connecting.CancelAfter(borrowed.ConnectTimeout);
            await connection.StartAsync(connecting.Token);
        }

        var started = time.GetTimestamp();
        Interlocked.Exchange(ref last, started);
        while (true)
        {
            await Task.Delay(QuietPeriod / 4, time, cancellationToken);
            if (!connection.IsConnected)
            {
                // Its node came back and took its session (its next mark clears our claim), or the connection was lost
                // otherwise (the network, a broker restart; the broker does not say which: mosquitto ends a taken-over
                // MQTT 5 connection as a normal one). The claim holds off other recoveries for two mark intervals, time
                // for a node that came back to mark; then it lapses and the next round drains what is left, instead of
                // the session's messages waiting out the claim timeout.
                await ReleaseAsync(clientId, self, lapseAfter: 2 * MarkInterval);
                Log.TakenBack(_logger, clientId, Volatile.Read(ref received));
                return true;
            }

            if (Volatile.Read(ref busy) == 0 && time.GetElapsedTime(Interlocked.Read(ref last)) >= QuietPeriod)
            {
                break;
            }

            if (time.GetElapsedTime(started) > mqtt.Options.SessionMaxDrain)
            {
                // Kept: what is being handled is not acknowledged (the handler is cancelled), so the broker delivers it
                // again to the next borrower, with the rest of what the session holds.
                Log.DrainCut(_logger, clientId, Volatile.Read(ref received), (long)mqtt.Options.SessionMaxDrain.TotalSeconds);
                await connection.DisconnectAsync(cancellationToken);
                return false;
            }
        }

        if (BeforeEndSession is { } hook)
        {
            await hook(connection);
        }

        if (!await connection.EndSessionAsync(cancellationToken))
        {
            // Lost (or, under 3.1.1, the clean-session connect refused) just before the end: as when lost while draining,
            // the claim lapses after two mark intervals, not at the claim timeout.
            await ReleaseAsync(clientId, self, lapseAfter: 2 * MarkInterval);
            Log.TakenBack(_logger, clientId, Volatile.Read(ref received));
            return true;
        }

        await using (var command = dataSource.CreateCommand($"delete from {_table} where client_id = $1 and claimed_by = $2"))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = clientId });
            command.Parameters.Add(new NpgsqlParameter { Value = self });
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        Recovered.Add(1);
        RecoveredMessages.Add(received);
        Log.Recovered(_logger, clientId, received, (long)time.GetElapsedTime(started).TotalMilliseconds);
        return true;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7010, Level = LogLevel.Warning, Message = "Manager node session '{ClientId}' was not marked alive within the stale timeout: recovering what the broker kept for it")]
        public static partial void Recovering(ILogger logger, string clientId);

        [LoggerMessage(EventId = 7011, Level = LogLevel.Information, Message = "Recovered manager node session '{ClientId}': {Messages} messages handled in {Milliseconds} ms; the session is ended")]
        public static partial void Recovered(ILogger logger, string clientId, int messages, long milliseconds);

        [LoggerMessage(EventId = 7012, Level = LogLevel.Information, Message = "Manager node session '{ClientId}': the borrowed connection ended after {Messages} recovered messages (its node took it back, or the connection was lost); left to its node, or to a later round if it does not mark")]
        public static partial void TakenBack(ILogger logger, string clientId, int messages);

        [LoggerMessage(EventId = 7013, Level = LogLevel.Warning, Message = "Recovering manager node session '{ClientId}' was not drained within {Seconds} s ({Messages} messages so far); keeping it for the next round")]
        public static partial void DrainCut(ILogger logger, string clientId, int messages, long seconds);

        [LoggerMessage(EventId = 7014, Level = LogLevel.Warning, Message = "Session recovery round failed; trying again at the next round")]
        public static partial void RoundFailed(ILogger logger, Exception exception);
    }
}
