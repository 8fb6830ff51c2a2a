using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Messaging;
using Propeller.Infrastructure.MartenStore;

namespace Propeller.Infrastructure.Messaging;

/// <summary>
/// Sends what the business transactions wrote to the outbox (ARCHITECTURE.md §4): claims due rows with
/// <c>FOR UPDATE SKIP LOCKED</c> and a claim expiry (so several nodes share the work and a dead node's claims return),
/// publishes them in order, marks them sent; a failure is retried with exponential backoff and jitter, and after
/// <see cref="OutboxOptions.MaxAttempts"/> the row is dead-lettered with its error. At-least-once: a crash between
/// publish and mark sends the message again.
/// </summary>
public sealed class OutboxRelay : ICommittedMessages
{
    private static readonly Meter Meter = new("Propeller.Outbox");
    private static readonly Counter<long> Sent = Meter.CreateCounter<long>("outbox_sent", description: "Outbox messages published");
    private static readonly Counter<long> Failed = Meter.CreateCounter<long>("outbox_failed", description: "Outbox publish attempts that failed");
    private static readonly Counter<long> DeadLettered = Meter.CreateCounter<long>("outbox_dead_lettered", description: "Outbox messages given up on");

    private readonly NpgsqlDataSource _dataSource;
    private readonly IMessagePublisher _publisher;
    private readonly OutboxOptions _options;
    private readonly ILogger<OutboxRelay> _logger;
    private readonly string _schema;
    private readonly WorkSignal _signal;
    private readonly Channel<(long Id, OutgoingMessage Message)> _committed =
        Channel.CreateBounded<(long Id, OutgoingMessage Message)>(new BoundedChannelOptions(8192) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    private long _depth;
    private volatile bool _fastPath;

    public OutboxRelay(NpgsqlDataSource dataSource, IMessagePublisher publisher, IOptions<EventStoreOptions> storeOptions, IOptions<OutboxOptions> options, ILogger<OutboxRelay> logger, WorkSignals signals)
    {
        ArgumentNullException.ThrowIfNull(storeOptions);
        ArgumentNullException.ThrowIfNull(options);
        _dataSource = dataSource;
        _publisher = publisher;
        _options = options.Value;
        _logger = logger;
        _schema = Sql.Identifier(storeOptions.Value.Schema);
        ArgumentNullException.ThrowIfNull(signals);
        _signal = signals.Outbox;
        Meter.CreateObservableGauge("outbox_depth", () => Interlocked.Read(ref _depth), description: "Outbox messages not yet sent (refreshed each relay round)");
    }

    /// <summary>Queues just-committed messages for the fast path (dropped when the queue is full: the relay sends them).</summary>
    public void Committed(IReadOnlyList<long> outboxIds, IReadOnlyList<OutgoingMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(outboxIds);
        ArgumentNullException.ThrowIfNull(messages);
        if (!_fastPath)
        {
            return;
        }

        for (var i = 0; i < outboxIds.Count; i++)
        {
            _committed.Writer.TryWrite((outboxIds[i], messages[i]));
        }
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        // The fast path's sent marks lag by a few milliseconds so that one statement marks many messages; the relay
        // leaves rows younger than FastPathGrace alone, so a late mark never means a second send.
        await using var sentMarks = new BatchedMarks<long>(ids => MarkSentAsync([.. ids], CancellationToken.None), ex => OutboxLog.LoopError(_logger, ex), TimeSpan.FromMilliseconds(5));
        _fastPath = true;
        var fast = Task.Run(() => FastPathAsync(sentMarks, cancellationToken), CancellationToken.None);
        try
        {
            await RelayLoopAsync(cancellationToken);
        }
        finally
        {
            _fastPath = false;
            await fast;
        }
    }

    /// <summary>
    /// Publishes messages right after their transaction committed, in the order they committed on this node, and marks
    /// them sent. Anything that fails here is left to the relay, which leaves rows younger than
    /// <see cref="OutboxOptions.FastPathGrace"/> to this path while it runs.
    /// </summary>
    private async Task FastPathAsync(BatchedMarks<long> sentMarks, CancellationToken cancellationToken)
    {
        var batch = new List<(long Id, OutgoingMessage Message)>();
        try
        {
            while (await _committed.Reader.WaitToReadAsync(cancellationToken))
            {
                while (batch.Count < _options.BatchSize && _committed.Reader.TryRead(out var item))
                {
                    batch.Add(item);
                }

                var publishes = HandOver(batch.Select(b => b.Message), cancellationToken);
                var sent = new List<long>(batch.Count);
                await AwaitInOrderAsync(
                    publishes,
                    i => sent.Add(batch[i].Id),
                    (i, ex) =>
                    {
                        OutboxLog.FastPathFailed(_logger, batch[i].Id, batch[i].Message.Destination, ex.Message);
                        return Task.CompletedTask;
                    },
                    cancellationToken);

                batch.Clear();
                foreach (var id in sent)
                {
                    sentMarks.Add(id);
                }

                Sent.Add(sent.Count);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping: what is queued here is still in the outbox.
        }
    }

    private async Task RelayLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (await RelayOnceAsync(cancellationToken) == 0)
                {
                    Interlocked.Exchange(ref _depth, await DepthAsync(cancellationToken));
                    // With the fast path on, the relay only sends what it left behind (older than the grace): it need
                    // not wake for every commit.
                    if (_fastPath)
                    {
                        await Task.Delay(Max(_options.PollInterval, _options.FastPathGrace / 4), cancellationToken);
                    }
                    else
                    {
                        await _signal.WaitAsync(_options.PollInterval, cancellationToken);
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
            {
                OutboxLog.LoopError(_logger, ex);
                await Task.Delay(_options.RetryDelay, cancellationToken);
            }
        }
    }

    /// <summary>
    /// One round: claim due rows, publish them (all handed to the broker connection in order, then awaited together),
    /// record the outcomes. Returns how many were attempted.
    /// </summary>
    public async Task<int> RelayOnceAsync(CancellationToken cancellationToken)
    {
        var claimed = await ClaimAsync(cancellationToken);
        if (claimed.Count == 0)
        {
            return 0;
        }

        var publishes = HandOver(claimed.Select(r => r.Message), cancellationToken);
        var sent = new List<long>();
        try
        {
            await AwaitInOrderAsync(publishes, i => sent.Add(claimed[i].Id), (i, ex) => RecordFailureAsync(claimed[i], ex.Message, cancellationToken), cancellationToken);
        }
        finally
        {
            await MarkSentAsync(sent, cancellationToken);
            var untried = claimed.Skip(publishes.Count).Select(r => r.Id).ToArray();
            if (untried.Length > 0)
            {
                await ExecuteAsync($"update {_schema}.outbox set claimed_until = null where id = any($1)", CancellationToken.None, untried);
            }
        }

        Sent.Add(sent.Count);
        return publishes.Count;
    }

    /// <summary>
    /// Hands the messages to the publisher in order (which fixes their place on the wire) without waiting for their
    /// acknowledgements. A publish that fails at once (not connected) stops the hand-over, so the rest keep their order
    /// for a later round; a failure found later (no acknowledgement) cannot recall the messages already handed over.
    /// </summary>
    private List<Task> HandOver(IEnumerable<OutgoingMessage> messages, CancellationToken cancellationToken)
    {
        var publishes = new List<Task>();
        foreach (var message in messages)
        {
            var publish = PublishAsync(message, cancellationToken);
            publishes.Add(publish);
            if (publish.IsFaulted)
            {
                break;
            }
        }

        return publishes;
    }

    /// <summary>Awaits the handed-over publishes in order, reporting each one's outcome by its index.</summary>
    private static async Task AwaitInOrderAsync(List<Task> publishes, Action<int> sent, Func<int, Exception, Task> failed, CancellationToken cancellationToken)
    {
        for (var i = 0; i < publishes.Count; i++)
        {
            try
            {
                await publishes[i];
                sent(i);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                await failed(i, ex);
            }
        }
    }

    // Async, so a publisher that throws at once gives a faulted task (HandOver stops there) instead of an exception.
    private async Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken) => await _publisher.PublishAsync(message, cancellationToken);

    public async Task<long> DepthAsync(CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand($"select count(*) from {_schema}.outbox where sent_at is null and dead_at is null");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private async Task<List<Row>> ClaimAsync(CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand($"""
            update {_schema}.outbox set claimed_until = now() + make_interval(secs => $2)
             where id in (select id from {_schema}.outbox
                           where sent_at is null and dead_at is null and next_attempt_at <= now()
                             and (claimed_until is null or claimed_until < now())
                             and created_at <= now() - make_interval(secs => $3)
                           order by id limit $1 for update skip locked)
            returning id, destination, payload, headers::text, attempts
            """);
        command.Parameters.AddWithValue(_options.BatchSize);
        command.Parameters.AddWithValue(_options.ClaimDuration.TotalSeconds);
        command.Parameters.AddWithValue(_fastPath ? _options.FastPathGrace.TotalSeconds : 0.0);
        var rows = new List<Row>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var headers = await reader.IsDBNullAsync(3, cancellationToken) ? null : JsonSerializer.Deserialize<Dictionary<string, string>>(reader.GetString(3));
            rows.Add(new Row(reader.GetInt64(0), new OutgoingMessage(reader.GetString(1), await reader.GetFieldValueAsync<byte[]>(2, cancellationToken), headers), reader.GetInt32(4)));
        }

        rows.Sort((a, b) => a.Id.CompareTo(b.Id));
        return rows;
    }

    private async Task RecordFailureAsync(Row row, string reason, CancellationToken cancellationToken)
    {
        Failed.Add(1);
        var attempts = row.Attempts + 1;
        if (attempts >= _options.MaxAttempts)
        {
            DeadLettered.Add(1);
            OutboxLog.DeadLettered(_logger, row.Id, row.Message.Destination, attempts, reason);
            await ExecuteAsync(
                $"update {_schema}.outbox set attempts = $2, last_error = $3, dead_at = now(), claimed_until = null where id = $1",
                cancellationToken, row.Id, attempts, reason);
            return;
        }

        var exponential = _options.RetryDelay * Math.Pow(2, attempts - 1);
        var delay = TimeSpan.FromTicks(Math.Min(exponential.Ticks, _options.MaxRetryDelay.Ticks));
        delay += TimeSpan.FromTicks((long)(delay.Ticks * 0.2 * Random.Shared.NextDouble()));
        OutboxLog.PublishFailed(_logger, row.Id, row.Message.Destination, attempts, delay, reason);
        await ExecuteAsync(
            $"update {_schema}.outbox set attempts = $2, last_error = $3, next_attempt_at = now() + make_interval(secs => $4), claimed_until = null where id = $1",
            cancellationToken, row.Id, attempts, reason, delay.TotalSeconds);
    }

    private Task MarkSentAsync(List<long> ids, CancellationToken cancellationToken) =>
        ids.Count == 0
            ? Task.CompletedTask
            : ExecuteAsync($"update {_schema}.outbox set sent_at = now(), claimed_until = null where id = any($1)", CancellationToken.None, ids.ToArray());

    private async Task ExecuteAsync(string sql, CancellationToken cancellationToken, params object[] values)
    {
        await using var command = _dataSource.CreateCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private sealed record Row(long Id, OutgoingMessage Message, int Attempts);
}
