using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Contracts.Json;
using Propeller.Contracts.Mqtt;
using Propeller.Contracts.Proplets;
using Propeller.Domain.Common;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Proplets;
using Propeller.Broker;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Turns proplet messages into commands (spec propeller-manager.md §6): discovery registers or refreshes a proplet,
/// heartbeats fold into the proplet view, a Last Will ("status":"offline") marks it offline, metrics are stored, and
/// results become RecordResult.
/// <para>
/// <see cref="AcceptBatchAsync"/> gets what has arrived on the broker connection, before those messages are
/// acknowledged, and returns once every effect is committed: the batch's results are decided and appended by Wolverine's
/// handler in one transaction, discovery, Last Will and a heartbeat's coming back online by the proplet handler
/// (<see cref="IInboundCommands"/>, ADR 0014), heartbeats patch the proplet view (<see cref="IPropletRegistry"/>),
/// metrics are stored. Messages of different keys (task or proplet id) run in parallel, each key's in arrival order;
/// the connection then acknowledges the batch in arrival order (docs/adr/0008-mqttnet.md). A message delivered twice
/// changes nothing the second time (a result decided again on the task's state is recorded as ignored; registering,
/// heartbeats and marking offline are idempotent). Malformed payloads are logged with their topic, counted
/// (mqtt_malformed_messages) and acknowledged; nothing throws out.
/// </para>
/// </summary>
public sealed class InboundHandler(
    IInboundCommands inbound, IPropletRegistry proplets, NpgsqlDataSource dataSource, IOptions<EventStoreOptions> storeOptions,
    IOptions<MqttBridgeOptions> options, TimeProvider time, HeartbeatWitness witness, ILogger<InboundHandler> logger, LatentInvoker? invocations = null)
{
    private static readonly Meter Meter = new("Propeller.Inbound");
    private static readonly Counter<long> MalformedMessages =
        Meter.CreateCounter<long>("mqtt_malformed_messages", "{message}", "Proplet messages dropped as malformed (logged with their topic, acknowledged)");

    private const string RetainedAlive =
        "a retained message (a Last Will or heartbeat the broker kept from before this subscription) says nothing about liveness now; ignored";

    private readonly string _base = options.Value.BaseTopic + "/";
    private readonly KeyedOrder _order = new();
    private readonly KeyedOrder _resultOrder = new();
    private readonly Lock _resultsLock = new();
    private Task _resultsBefore = Task.CompletedTask;
    private readonly string _schema = Sql.Identifier(storeOptions.Value.Schema);

    /// <summary>Tests only: runs before a batch of results is recorded, with each result's task and "running" flag.</summary>
    internal Func<IReadOnlyList<(Guid TaskId, bool? Running)>, Task>? ResultsHook { get; set; }

    /// <summary>A broker connection's handler that hands batches to <see cref="AcceptBatchAsync"/> and logs (with the
    /// first topic) what fails there; the batch is then acknowledged, and handled again only if redelivered.</summary>
    public Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask> Guarded(ILogger log) => async (messages, token) =>
    {
        try
        {
            await AcceptBatchAsync(messages, token);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            MqttBridgeLog.HandlerFailed(log, ex, messages[0].Topic);
        }
    };

    /// <summary>
    /// Parses, checks and handles messages; returns once their effects are committed (so before the broker connection
    /// acknowledges them). A message whose effect cannot be stored because PostgreSQL is unreachable is retried until it
    /// can, or until the manager stops: then it is not acknowledged, and the broker delivers it again.
    /// </summary>
    public async ValueTask AcceptBatchAsync(IReadOnlyList<ReceivedMessage> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var works = new List<Work>(messages.Count);
        foreach (var message in messages)
        {
            if (!message.Topic.StartsWith(_base, StringComparison.Ordinal))
            {
                continue;
            }

            try
            {
                var topic = message.Topic[_base.Length..];
                // A result's raw results are stored as text, escapes and all: ParseResult checks the fields stored as strings.
                if (topic != Topics.Results && StorableText.Problem(message.Payload.Span) is { } problem)
                {
                    Malformed(message.Topic, $"its values {problem}");
                    continue;
                }

                var work = topic switch
                {
                    Topics.Results => ParseResult(message.Topic, message.Payload.ToArray()),
                    Topics.PropletCreate => AcceptDiscovery(message),
                    Topics.PropletAlive => AcceptAlive(message),
                    Topics.TaskMetrics => AcceptTaskMetrics(message),
                    Topics.PropletMetrics => AcceptPropletMetrics(message),
                    Topics.InvokeResults => AcceptInvokeResult(message),
                    _ => (Work?)null,
                };
                if (work is not null)
                {
                    works.Add(work);
                }
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException)
            {
                // InvalidOperationException: System.Text.Json reading a value as a type it does not hold.
                Malformed(message.Topic, ex.Message);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Reading it failed some other way (a fault of ours): this message is dropped, logged with the exception,
                // not the batch with it (the batch is acknowledged once handled, so its other messages would be lost).
                MqttBridgeLog.HandlerFailed(logger, ex, message.Topic);
                Malformed(message.Topic, $"{ex.GetType().Name}: {ex.Message}");
            }
        }

        await HandleAllAsync(works, cancellationToken);
    }

    /// <summary>
    /// A batch's results together, in their order (<see cref="IInboundCommands.RecordResultsAsync"/>: they join the
    /// command batches in that order), after the results of the same tasks from batches still being handled (the broker
    /// connection hands over several, <see cref="ManagerMqtt.ReceiveBatchesInFlight"/>); the other messages by key,
    /// different keys in parallel, one key's in order, also after the same key's messages from earlier batches. A task's
    /// results are decided in the order they came: a daemon that ends at once sends its "started" result and its end
    /// back to back, and decided side by side the end could win the stream's race, complete the task as a plain run
    /// and leave "started" ignored on a completed task (no serving in its history).
    /// </summary>
    private Task HandleAllAsync(List<Work> works, CancellationToken cancellationToken)
    {
        var all = new List<Task>();
        var results = works.OfType<ResultWork>().ToList();
        Task? handled = null;
        if (results.Count > 0)
        {
            var work = new ResultsWork(results[0].Topic, results);
            all.Add(handled = _resultOrder.RunAsync(work.TaskKeys, () => HandleWithRetryAsync(work, cancellationToken)));
        }

        Task resultsBefore;
        lock (_resultsLock)
        {
            if (handled is not null)
            {
                _resultsBefore = _resultsBefore.IsCompleted ? handled : BothEndedAsync(_resultsBefore, handled);
            }

            resultsBefore = _resultsBefore;
        }

        // A Last Will after the results that came before it (this batch's and the earlier ones still being handled): the
        // proplet's last result, then its end, is recorded in that order, not its task re-dispatched and the result
        // ignored (the task run twice). So is a report of what the proplet holds: a task it no longer holds because it
        // finished is not started again when its result is still on the way.
        all.AddRange(works.Where(w => w is not ResultWork).GroupBy(w => w.PartitionKey, StringComparer.Ordinal).Select(ofKey => _order.RunAsync(ofKey.Key, async () =>
        {
            foreach (var work in ofKey)
            {
                await HandleWithRetryAsync(work is AliveWork { Offline: true } or DiscoveryWork { Held: not null } ? work with { ResultsBefore = resultsBefore } : work, cancellationToken);
            }
        })));
        return Task.WhenAll(all);
    }

    /// <summary>Ends once both have ended, however they ended.</summary>
    private static async Task BothEndedAsync(Task first, Task second)
    {
        await first.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await second.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>A proplet's message, a field of the wrong type left out and logged (<see cref="LenientJson"/>).</summary>
    private T? Read<T>(string topic, ReadOnlySpan<byte> payload)
    {
        var message = LenientJson.Deserialize<T>(payload, out var ignored);
        if (ignored.Count > 0)
        {
            MqttBridgeLog.FieldsIgnored(logger, topic, string.Join(", ", ignored));
        }

        return message;
    }

    private void Malformed(string topic, string reason)
    {
        MqttBridgeLog.Malformed(logger, topic, reason);
        MalformedMessages.Add(1, new KeyValuePair<string, object?>("topic", topic.StartsWith(_base, StringComparison.Ordinal) ? topic[_base.Length..] : topic));
    }

    private async Task HandleWithRetryAsync(Work work, CancellationToken cancellationToken)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await HandleAsync(work, cancellationToken);
                witness.Stored(time);
                return;
            }
            catch (Exception ex) when (PostgresFailures.IsTransient(ex) && !cancellationToken.IsCancellationRequested)
            {
                if (PostgresFailures.IsUnavailable(ex))
                {
                    witness.StoringFailed(); // heartbeats are not recorded now: liveness waits (HeartbeatWitness); not for a deadlock
                }

                MqttBridgeLog.HandlerFailed(logger, ex, work.Topic);
                await Task.Delay(delay, time, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
            catch (Exception ex) when (PostgresFailures.IsConflict(ex) && attempt < 3)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100 * attempt * attempt), time, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Not retryable (a bug, a conflict that does not settle): logged; the message is acknowledged.
                MqttBridgeLog.HandlerFailed(logger, ex, work.Topic);
                return;
            }
        }
    }

    private Task HandleAsync(Work work, CancellationToken cancellationToken) => work switch
    {
        ResultWork result => HandleResultAsync(result, cancellationToken),
        ResultsWork results => RecordResultsAsync(results, cancellationToken),
        DiscoveryWork discovery => HandleDiscoveryAsync(discovery, cancellationToken),
        AliveWork alive => HandleAliveAsync(alive, cancellationToken),
        TaskMetricsWork metrics => StoreTaskMetricsAsync(metrics, cancellationToken),
        PropletMetricsWork metrics => StorePropletMetricsAsync(metrics, cancellationToken),
        _ => Task.CompletedTask,
    };

    /// <summary>
    /// An invocation's answer goes to the request waiting for it (nothing is stored here: the endpoint records the
    /// invocation). The original requires results to be a string and error a string or null (spec propeller-edge.md
    /// §1.12): a null results is malformed. An invocation id that is null, as one that is empty, matches no request:
    /// ignored, as the original ignores an empty or unknown id.
    /// </summary>
    private Work? AcceptInvokeResult(ReceivedMessage message)
    {
        var result = JsonSerializer.Deserialize<InvokeResultMessage>(message.Payload.Span);
        if (result is null)
        {
            Malformed(message.Topic, "null invoke result");
        }
        else if (result.Results is null)
        {
            Malformed(message.Topic, "results must be a string");
        }
        else if (invocations?.Complete(result) != true)
        {
            MqttBridgeLog.InvocationUnknown(logger, result.TaskId ?? "", result.InvocationId ?? "");
        }

        return null;
    }

    private ResultWork? ParseResult(string topic, byte[] payload)
    {
        var result = Read<ResultMessage>(topic, payload);
        if (result?.TaskId is not { Length: > 0 } taskId || !Guid.TryParse(taskId, out var guid))
        {
            Malformed(topic, "task_id must be a task's UUID");
            return null;
        }

        // Refused here, never by PostgreSQL (StorableText): there it failed the batch it joined and could leave the
        // connection out of step, failing whatever came next, a good result among them.
        if (result.Error is { ValueKind: JsonValueKind.String } e && StorableText.Problem(e) is { } problem)
        {
            Malformed(topic, $"error {problem}");
            return null;
        }

        if (StorableText.HoldsNul(result.PropletId))
        {
            Malformed(topic, $"proplet_id {StorableText.Nul}");
            return null;
        }

        var error = result.Error is { ValueKind: JsonValueKind.String } text && text.GetString() is { Length: > 0 } message ? message : null;
        var propletId = result.PropletId is { Length: > 0 } p ? p : null;

        var key = "results:" + Convert.ToHexString(SHA256.HashData(payload));
        return new ResultWork(topic, guid.ToString(), key, new TaskId(guid), result.Results?.GetRawText(), error, propletId, result.Attempt, result.Running, payload, result.Dispatch);
    }

    private (TaskCommand.RecordResult Command, EventMetadata Metadata) ResultCommand(ResultWork work)
    {
        var now = time.GetUtcNow();
        var metadata = new EventMetadata(work.TaskId.ToString(), work.Key, work.PropletId is { } p ? $"proplet:{p}" : "proplet", now);
        return (new TaskCommand.RecordResult(work.TaskId, work.Results, work.Error, now, work.PropletId, work.Attempt, work.Running == true, work.Running == false, work.Dispatch), metadata);
    }

    /// <summary>
    /// A batch's results together; a result that failed is recorded again alone (retried while PostgreSQL is
    /// unreachable; one that cannot be stored is logged and acknowledged), and only that one: the others are committed,
    /// and deciding them again would record each a second time as ignored.
    /// </summary>
    private async Task RecordResultsAsync(ResultsWork work, CancellationToken cancellationToken)
    {
        if (ResultsHook is { } hook)
        {
            await hook([.. work.Results.Select(r => (r.TaskId.Value, r.Running))]);
        }

        var failures = await inbound.RecordResultsAsync([.. work.Results.Select(ResultCommand)], cancellationToken);
        for (var i = 0; i < failures.Count; i++)
        {
            if (failures[i] is { } failure)
            {
                MqttBridgeLog.HandlerFailed(logger, failure, work.Topic);
                await HandleWithRetryAsync(work.Results[i], cancellationToken);
            }
        }
    }

    /// <summary>One result alone (when its batch failed): its handler sends on_task_complete after the commit.</summary>
    private Task HandleResultAsync(ResultWork work, CancellationToken cancellationToken)
    {
        var (command, metadata) = ResultCommand(work);
        return inbound.RecordResultAsync(command, metadata, cancellationToken);
    }

    private DiscoveryWork? AcceptDiscovery(ReceivedMessage message)
    {
        var discovery = Read<DiscoveryMessage>(message.Topic, message.Payload.Span);
        if (discovery?.PropletId is not { Length: > 0 } propletId)
        {
            Malformed(message.Topic, "proplet_id must be a non-empty string");
            return null;
        }

        if (PropletIds.Problem(propletId) is { } problem)
        {
            Malformed(message.Topic, problem);
            return null;
        }

        return new DiscoveryWork(message.Topic, propletId, ReadMetadata(discovery.Metadata), ReadHeld(message.Topic, discovery.Tasks), discovery.SessionPresent);
    }

    /// <summary>Registers (or refreshes) the proplet; then, when it said what it holds, reconciles that with the tasks
    /// the manager has running there (<see cref="IInboundCommands.ReconcileHeldAsync"/>).</summary>
    private async Task HandleDiscoveryAsync(DiscoveryWork discovery, CancellationToken cancellationToken)
    {
        // A refused proplet (an id the manager cannot take) holds nothing here: reconciled, the tasks "on" its id (the
        // broadcast marker's) would be taken for lost and re-dispatched.
        if (await RegisterAsync(discovery.Topic, new PropletId(discovery.PropletId), discovery.Metadata, cancellationToken) && discovery.Held is { } held)
        {
            await discovery.ResultsBefore.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await inbound.ReconcileHeldAsync(discovery.PropletId, held, time.GetUtcNow(), discovery.SessionPresent, cancellationToken);
        }
    }

    /// <summary>The most held tasks a discovery may list; a longer list is malformed (our proplet lists what it runs,
    /// what waits for a slot and its deployed latent tasks).</summary>
    internal const int MaxHeldTasks = 65536;

    /// <summary>
    /// A discovery's <c>tasks</c> (our proplet's report of what it holds): null without the field (the original
    /// proplet), or when it is malformed (logged and counted; the discovery itself still registers): a list the manager
    /// cannot read whole says nothing reliable about what the proplet lacks.
    /// </summary>
    private Dictionary<Guid, HeldRun>? ReadHeld(string topic, JsonElement? tasks)
    {
        if (tasks is not { } list || list.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        string? problem = null;
        var held = new Dictionary<Guid, HeldRun>();
        if (list.ValueKind != JsonValueKind.Array)
        {
            problem = "tasks must be an array";
        }
        else if (list.GetArrayLength() > MaxHeldTasks)
        {
            problem = $"tasks lists more than {MaxHeldTasks} items";
        }
        else
        {
            foreach (var item in list.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object
                    || !item.TryGetProperty("task_id", out var id) || id.ValueKind != JsonValueKind.String || !Guid.TryParse(id.GetString(), out var taskId))
                {
                    problem = "every item of tasks must have a task's UUID as task_id";
                    break;
                }

                if (!Positive(item, "attempt", out var attempt) || !Positive(item, "dispatch", out var dispatch))
                {
                    problem = "an attempt or dispatch in tasks must be a positive integer";
                    break;
                }

                held[taskId] = new HeldRun(attempt, dispatch);
            }
        }

        if (problem is null)
        {
            return held;
        }

        Malformed(topic, $"{problem}; what the proplet holds is not reconciled");
        return null;
    }

    /// <summary>An optional positive integer field: false when present and not one.</summary>
    private static bool Positive(JsonElement item, string name, out int? value)
    {
        value = null;
        if (!item.TryGetProperty(name, out var field) || field.ValueKind == JsonValueKind.Null)
        {
            return true;
        }

        if (field.ValueKind != JsonValueKind.Number || !field.TryGetInt32(out var n) || n < 1)
        {
            return false;
        }

        value = n;
        return true;
    }

    private AliveWork? AcceptAlive(ReceivedMessage message)
    {
        if (message.Retain)
        {
            // The broker clears the flag on what it forwards to a live subscription, so a retained message is one it kept
            // from before this subscription and hands out again at every (re)subscribe (each reconnect under 3.1.1). The
            // embedded C proplet may publish its Last Will retained (manager spec §6.3; edge spec §1.5 says not):
            // replayed, an old "offline" marked a live proplet offline and its tasks were dispatched again, running
            // twice. Neither it nor a retained heartbeat says anything about liveness now; a proplet that is really gone
            // is found by its missing heartbeats.
            Malformed(message.Topic, RetainedAlive);
            return null;
        }

        var alive = Read<AliveMessage>(message.Topic, message.Payload.Span);
        if (alive?.PropletId is not { Length: > 0 } propletId)
        {
            Malformed(message.Topic, "proplet_id must be a non-empty string");
            return null;
        }

        if (PropletIds.Problem(propletId) is { } problem)
        {
            Malformed(message.Topic, problem);
            return null;
        }

        // A Last Will (the original counted it as a heartbeat, §6.3 [QUIRK]).
        var offline = string.Equals(alive.Status, "offline", StringComparison.OrdinalIgnoreCase);
        return new AliveWork(message.Topic, propletId, offline);
    }

    private async Task HandleAliveAsync(AliveWork work, CancellationToken cancellationToken)
    {
        await work.ResultsBefore.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        var id = new PropletId(work.PropletId);
        var now = time.GetUtcNow();
        var metadata = new EventMetadata(null, null, $"proplet:{work.PropletId}", now);
        if (work.Offline)
        {
            await HandlePropletAsync(new PropletCommand.MarkPropletOffline(id, "last will: offline", now), metadata, cancellationToken);
            return;
        }

        switch (await proplets.RecordHeartbeatAsync(id, now, cancellationToken))
        {
            case null:
                if (await RegisterAsync(work.Topic, id, PropletMetadata.Empty, cancellationToken))
                {
                    await proplets.RecordHeartbeatAsync(id, now, cancellationToken);
                }
                break;
            case true:
                await HandlePropletAsync(new PropletCommand.MarkPropletOnline(id, now), metadata, cancellationToken);
                break;
            default:
                break;
        }
    }

    /// <summary>Registers or refreshes the proplet; false when its id is refused (logged and counted as malformed).</summary>
    private async Task<bool> RegisterAsync(string topic, PropletId id, PropletMetadata metadata, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (await HandlePropletAsync(new PropletCommand.RegisterProplet(id, PropletNames.Next(), metadata, now), new EventMetadata(null, null, $"proplet:{id}", now), cancellationToken)
            is { Kind: RejectionKind.Invalid } refused)
        {
            Malformed(topic, refused.Reason); // an id the manager cannot take (a task's stream, the broadcast marker): logged and counted
            return false;
        }

        return true;
    }

    private Task<Rejection?> HandlePropletAsync(PropletCommand command, EventMetadata metadata, CancellationToken cancellationToken) =>
        inbound.HandlePropletAsync(command, metadata, cancellationToken);

    private TaskMetricsWork? AcceptTaskMetrics(ReceivedMessage message)
    {
        var metrics = Read<InboundTaskMetrics>(message.Topic, message.Payload.Span);
        if (metrics?.TaskId is not { Length: > 0 } taskId || !Guid.TryParse(taskId, out var guid))
        {
            Malformed(message.Topic, "task_id must be a task's UUID");
            return null;
        }

        if (metrics.PropletId is not { ValueKind: JsonValueKind.String } propletId)
        {
            Malformed(message.Topic, "proplet_id must be a string");
            return null;
        }

        if (metrics.Metrics is not { ValueKind: JsonValueKind.Object } sample)
        {
            Malformed(message.Topic, "metrics must be an object");
            return null;
        }

        var aggregated = metrics.Aggregated is { ValueKind: JsonValueKind.Object } a ? a : (JsonElement?)null;
        if ((PropletIds.Problem(propletId.GetString()!) ?? MetricsProblem("metrics", sample) ?? MetricsProblem("aggregated", aggregated)) is { } problem)
        {
            Malformed(message.Topic, problem);
            return null;
        }

        return new TaskMetricsWork(message.Topic, guid, propletId.GetString()!, SampledAt(metrics.Timestamp), sample.GetRawText(), aggregated?.GetRawText());
    }

    private PropletMetricsWork? AcceptPropletMetrics(ReceivedMessage message)
    {
        var metrics = Read<InboundPropletMetrics>(message.Topic, message.Payload.Span);
        if (metrics?.PropletId is not { Length: > 0 } propletId)
        {
            Malformed(message.Topic, "proplet_id must be a non-empty string");
            return null;
        }

        var cpu = metrics.CpuMetrics is { ValueKind: JsonValueKind.Object } c ? c : (JsonElement?)null;
        var memory = metrics.MemoryMetrics is { ValueKind: JsonValueKind.Object } m ? m : (JsonElement?)null;
        if ((PropletIds.Problem(propletId) ?? MetricsProblem("cpu_metrics", cpu) ?? MetricsProblem("memory_metrics", memory)) is { } problem)
        {
            Malformed(message.Topic, problem);
            return null;
        }

        return new PropletMetricsWork(message.Topic, propletId, metrics.Namespace, SampledAt(metrics.Timestamp), cpu?.GetRawText() ?? "{}", memory?.GetRawText() ?? "{}");
    }

    /// <summary>The most digits a number in a stored metrics object may take written out (every double's fits: 309
    /// before the point, 326 with a subnormal's after it).</summary>
    internal const int MaxMetricsNumberDigits = 400;

    /// <summary>The largest a stored metrics object may read back (its numbers written out); a proplet's sample is a
    /// few dozen fields.</summary>
    internal const int MaxMetricsBytes = 64 * 1024;

    /// <summary>
    /// What makes a metrics object unfit to store, or null. jsonb keeps a number as numeric and writes it out in full,
    /// so <c>1e131000</c> (8 bytes, within numeric's range: StorableText takes it) reads back as 131,001 digits: a 20 KB
    /// sample became ~300 MB on every read of its metrics page. Bounded by the text as it reads back, not as it came.
    /// </summary>
    private static string? MetricsProblem(string field, JsonElement? value)
    {
        if (value is not { } json)
        {
            return null;
        }

        var length = StorableText.WrittenOutLength(json, out var longestNumber);
        return longestNumber > MaxMetricsNumberDigits ? $"{field} holds a number of more than {MaxMetricsNumberDigits} digits written out (as stored)"
            : length > MaxMetricsBytes ? $"{field} is larger than {MaxMetricsBytes / 1024} KiB (its numbers written out, as stored)"
            : null;
    }

    /// <summary>An RFC 3339 string timestamp (in UTC: Npgsql refuses another offset for timestamptz, and the sample was
    /// lost), else the receipt time (as the original).</summary>
    private DateTimeOffset SampledAt(JsonElement? timestamp) =>
        timestamp is { ValueKind: JsonValueKind.String } t && Rfc3339.TryParse(t.GetString(), out var at) ? at : time.GetUtcNow();

    private async Task StoreTaskMetricsAsync(TaskMetricsWork work, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            $"insert into {_schema}.task_metrics (task_id, proplet_id, sampled_at, metrics, aggregated) values ($1, $2, $3, $4::jsonb, $5::jsonb)");
        command.Parameters.AddWithValue(work.TaskId);
        command.Parameters.AddWithValue(work.PropletId);
        command.Parameters.AddWithValue(work.SampledAt);
        command.Parameters.AddWithValue(work.Metrics);
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)work.Aggregated ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private async Task StorePropletMetricsAsync(PropletMetricsWork work, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            $"insert into {_schema}.proplet_metrics (proplet_id, namespace, sampled_at, cpu, memory) values ($1, $2, $3, $4::jsonb, $5::jsonb)");
        command.Parameters.AddWithValue(work.PropletId);
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)work.Namespace ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        command.Parameters.AddWithValue(work.SampledAt);
        command.Parameters.AddWithValue(work.Cpu);
        command.Parameters.AddWithValue(work.Memory);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Lenient metadata: strings, string items of tags, total_memory_bytes as an unsigned integer (§9.5 fixed).</summary>
    private static PropletMetadata ReadMetadata(JsonElement? element)
    {
        if (element is not { ValueKind: JsonValueKind.Object } m)
        {
            return PropletMetadata.Empty;
        }

        string? Text(string name) => m.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s ? s : null;
        var tags = m.TryGetProperty("tags", out var t) && t.ValueKind == JsonValueKind.Array
            ? t.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!).ToList()
            : [];
        var memory = m.TryGetProperty("total_memory_bytes", out var mem) && mem.ValueKind == JsonValueKind.Number && mem.TryGetUInt64(out var bytes) ? bytes : 0;
        return new PropletMetadata
        {
            Description = Text("description"),
            Tags = new EquatableArray<string>(tags),
            Location = Text("location"),
            Ip = Text("ip"),
            Environment = Text("environment"),
            Os = Text("os"),
            Hostname = Text("hostname"),
            CpuArch = Text("cpu_arch"),
            TotalMemoryBytes = memory,
            PropletVersion = Text("proplet_version"),
            WasmRuntime = Text("wasm_runtime"),
        };
    }

    private abstract record Work(string Topic, string PartitionKey)
    {
        /// <summary>For a Last Will and a report of held tasks: the results that came before it (<see cref="HandleAllAsync"/>).</summary>
        public Task ResultsBefore { get; init; } = Task.CompletedTask;
    }

    private sealed record ResultWork(string Topic, string PartitionKey, string Key, TaskId TaskId, string? Results, string? Error, string? PropletId, int? Attempt, bool? Running, byte[] Payload, int? Dispatch = null) : Work(Topic, PartitionKey);

    /// <summary>A batch's results, recorded together (the Wolverine pipeline).</summary>
    private sealed record ResultsWork(string Topic, IReadOnlyList<ResultWork> Results) : Work(Topic, "results")
    {
        /// <summary>The tasks whose results these are (their order keys).</summary>
        public IReadOnlyCollection<string> TaskKeys { get; } = [.. Results.Select(r => r.PartitionKey)];
    }

    private sealed record DiscoveryWork(string Topic, string PropletId, PropletMetadata Metadata, Dictionary<Guid, HeldRun>? Held, bool? SessionPresent) : Work(Topic, PropletId);

    private sealed record AliveWork(string Topic, string PropletId, bool Offline) : Work(Topic, PropletId);

    private sealed record TaskMetricsWork(string Topic, Guid TaskId, string PropletId, DateTimeOffset SampledAt, string Metrics, string? Aggregated)
        : Work(Topic, TaskId.ToString());

    private sealed record PropletMetricsWork(string Topic, string PropletId, string? Namespace, DateTimeOffset SampledAt, string Cpu, string Memory)
        : Work(Topic, PropletId);
}
