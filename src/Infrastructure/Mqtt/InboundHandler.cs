using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Contracts.Mqtt;
using Propeller.Domain.Common;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.Proplets;
using Propeller.Mqtt;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Turns proplet messages into commands (spec propeller-manager.md §6): discovery registers or refreshes a proplet,
/// heartbeats fold into the proplet view, a Last Will ("status":"offline") marks it offline, results go through the
/// inbox (stored first, handled once) to RecordResult. Malformed payloads are logged and dropped; nothing throws out.
/// </summary>
public sealed class InboundHandler(
    CommandHandler commands, IPropletRegistry proplets, NpgsqlDataSource dataSource, IOptions<EventStoreOptions> storeOptions,
    IOptions<MqttBridgeOptions> options, TimeProvider time, ILogger<InboundHandler> logger)
{
    private readonly string _base = options.Value.BaseTopic + "/";
    private readonly string _schema = Sql.Identifier(storeOptions.Value.Schema);

    public async Task HandleAsync(MqttMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (!message.Topic.StartsWith(_base, StringComparison.Ordinal))
        {
            return;
        }

        var path = message.Topic[_base.Length..];
        try
        {
            switch (path)
            {
                case Topics.Results:
                    await OnResultAsync(message, cancellationToken);
                    break;
                case Topics.PropletCreate:
                    await OnDiscoveryAsync(message, cancellationToken);
                    break;
                case Topics.PropletAlive:
                    await OnAliveAsync(message, cancellationToken);
                    break;
                default:
                    break;
            }
        }
        catch (JsonException ex)
        {
            MqttBridgeLog.Malformed(logger, message.Topic, ex.Message);
        }
    }

    private async Task OnResultAsync(MqttMessage message, CancellationToken cancellationToken)
    {
        var result = JsonSerializer.Deserialize<ResultMessage>(message.Payload.Span);
        if (result?.TaskId is not { Length: > 0 } taskId || !Guid.TryParse(taskId, out var guid))
        {
            MqttBridgeLog.Malformed(logger, message.Topic, "task_id must be a task's UUID");
            return;
        }

        // The inbox key is the message itself: an identical redelivery is handled once.
        var key = "results:" + Convert.ToHexString(SHA256.HashData(message.Payload.Span));
        if (!await BeginInboxAsync(key, cancellationToken))
        {
            MqttBridgeLog.Duplicate(logger, message.Topic, key);
            return;
        }

        var error = result.Error is { ValueKind: JsonValueKind.String } e && e.GetString() is { Length: > 0 } text ? text : null;
        var id = new TaskId(guid);
        var now = time.GetUtcNow();
        var metadata = new EventMetadata(taskId, key, result.PropletId is { Length: > 0 } p ? $"proplet:{p}" : "proplet", now);
        await commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new TaskCommand.RecordResult(id, result.Results?.GetRawText(), error, now, result.PropletId), metadata, cancellationToken);
        await using var handled = dataSource.CreateCommand($"update {_schema}.inbox set handled_at = now() where message_key = $1");
        handled.Parameters.AddWithValue(key);
        await handled.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>True when the message is new or was stored but never handled (a crash in between).</summary>
    private async Task<bool> BeginInboxAsync(string key, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"""
            with inserted as (insert into {_schema}.inbox (message_key) values ($1) on conflict (message_key) do nothing returning 1)
            select exists (select 1 from inserted) or exists (select 1 from {_schema}.inbox where message_key = $1 and handled_at is null)
            """);
        command.Parameters.AddWithValue(key);
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }

    private async Task OnDiscoveryAsync(MqttMessage message, CancellationToken cancellationToken)
    {
        var discovery = JsonSerializer.Deserialize<DiscoveryMessage>(message.Payload.Span);
        if (discovery?.PropletId is not { Length: > 0 } propletId)
        {
            MqttBridgeLog.Malformed(logger, message.Topic, "proplet_id must be a non-empty string");
            return;
        }

        await RegisterAsync(new PropletId(propletId), ReadMetadata(discovery.Metadata), cancellationToken);
    }

    private async Task OnAliveAsync(MqttMessage message, CancellationToken cancellationToken)
    {
        var alive = JsonSerializer.Deserialize<AliveMessage>(message.Payload.Span);
        if (alive?.PropletId is not { Length: > 0 } propletId)
        {
            MqttBridgeLog.Malformed(logger, message.Topic, "proplet_id must be a non-empty string");
            return;
        }

        var id = new PropletId(propletId);
        var now = time.GetUtcNow();
        var metadata = new EventMetadata(null, null, $"proplet:{propletId}", now);
        if (string.Equals(alive.Status, "offline", StringComparison.OrdinalIgnoreCase))
        {
            // A Last Will (the original counted it as a heartbeat, §6.3 [QUIRK]).
            await commands.HandleAsync(PropletAggregate.Decider, PropletAggregate.StreamId(id), new PropletCommand.MarkPropletOffline(id, "last will: offline", now), metadata, cancellationToken);
            return;
        }

        if (message.Retain)
        {
            return; // a retained message says nothing about liveness now
        }

        switch (await proplets.RecordHeartbeatAsync(id, now, cancellationToken))
        {
            case null:
                await RegisterAsync(id, PropletMetadata.Empty, cancellationToken);
                await proplets.RecordHeartbeatAsync(id, now, cancellationToken);
                break;
            case true:
                await commands.HandleAsync(PropletAggregate.Decider, PropletAggregate.StreamId(id), new PropletCommand.MarkPropletOnline(id, now), metadata, cancellationToken);
                break;
            default:
                break;
        }
    }

    private Task RegisterAsync(PropletId id, PropletMetadata metadata, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        return commands.HandleAsync(
            PropletAggregate.Decider, PropletAggregate.StreamId(id), new PropletCommand.RegisterProplet(id, PropletNames.Next(), metadata, now),
            new EventMetadata(null, null, $"proplet:{id}", now), cancellationToken);
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
}
