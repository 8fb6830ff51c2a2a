using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Propeller.Application.Messaging;
using Propeller.Application.Proplets;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// The manager's one broker connection (a persistent session under its entity id, unlike the original's clean one:
/// results published while the manager is down wait in the broker for it), subscribed to the proplets' topics it
/// handles (<see cref="Filters"/>), and the outbox's publisher. Last Will as the original's:
/// <c>{"status":"offline","proplet_id":"&lt;entity id&gt;"}</c> on control/proplet/alive.
/// </summary>
public sealed class ManagerMqtt : IMessagePublisher, IAsyncDisposable
{
    private static readonly string StartSuffix = "/" + Topics.Start;
    private static readonly string StopSuffix = "/" + Topics.Stop;

    private readonly MqttBridgeOptions _options;

    /// <summary>This connection's gauge (its client id as a label): a meter of its own, gone with the connection.</summary>
    private readonly Meter _meter = new("Propeller.Broker.Inbound");

    public ManagerMqtt(IOptions<MqttBridgeOptions> options, ILoggerFactory loggers, TimeProvider time, HeartbeatWitness witness)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(witness);
        _options = options.Value;
        var connection = SessionOptions(_options, _options.EntityId);
        connection.Will = new BrokerWill(
            Topics.Of(_options.BaseTopic, Topics.PropletAlive),
            System.Text.Encoding.UTF8.GetBytes($$"""{"status":"offline","proplet_id":"{{_options.EntityId}}"}"""));
        // Chosen at each connect, once the broker has said whether it offers shared subscriptions.
        connection.Subscribing = offered =>
        {
            var group = _options.ShareGroup is { Length: > 0 } name && (offered || !_options.ShareGroupIfOffered) ? name : null;
            var (filters, stale) = Filters(_options.BaseTopic, group);
            connection.Subscriptions.Clear();
            foreach (var filter in filters)
            {
                connection.Subscriptions.Add((filter, _options.QualityOfService));
            }

            connection.StaleSubscriptions.Clear();
            foreach (var filter in stale)
            {
                connection.StaleSubscriptions.Add(filter);
            }
        };

        Connection = new BrokerConnection(connection, loggers.CreateLogger<BrokerConnection>(), time)
        {
            // Heartbeats can be heard from now on (subscribed): silence counts only from here, after the proplets' time
            // to reconnect, and only up to the oldest message not yet handled (HeartbeatWitness).
            Connected = (_, _) =>
            {
                witness.ListeningFrom(time.GetUtcNow(), () => Connection!.IsConnected, () => Connection!.UnhandledFor);
                return Task.CompletedTask;
            },
        };
        CreateGauges();
    }

    public BrokerConnection Connection { get; }

    private void CreateGauges()
    {
        var client = new KeyValuePair<string, object?>("client_id", _options.EntityId);
        _meter.CreateObservableGauge(
            "mqtt_receive_unhandled_seconds",
            () => new Measurement<double>(Connection.UnhandledFor.TotalSeconds, client),
            "s",
            "How long the oldest proplet message received and not yet handled has waited (0: none waits); while it grows, the node hears nothing it can act on");
    }

    /// <summary>
    /// Received batches the <see cref="InboundHandler"/> holds at once. With one, a result that arrived while the batch
    /// before it waited for its commit waited too (1.6–1.9 ms at 1,000 tasks/s, a third of its way from the broker to
    /// Completed); handed over at once it joins the next command batch (docs/performance.md, session 20).
    /// Acknowledgements still go in arrival order, and the handler keeps each proplet's messages in order across batches.
    /// </summary>
    public const int ReceiveBatchesInFlight = 8;

    /// <summary>A manager node's persistent session: kept for 7 days while the node is away, under its entity id (the
    /// client id; also the username, with MANAGER_API_KEY as password). <see cref="SessionRecovery"/> borrows another node's
    /// session with these settings.</summary>
    internal static BrokerOptions SessionOptions(MqttBridgeOptions options, string clientId)
    {
        var connection = new BrokerOptions
        {
            ClientId = clientId,
            Username = clientId,
            Password = options.ApiKey,
            ProtocolVersion = options.ProtocolVersion,
            CleanStart = false,
            SessionExpiryInterval = 7 * 24 * 3600,
            OperationTimeout = options.OperationTimeout,
            MaxInflight = options.MaxInflight,
            MaxBatchesInFlight = ReceiveBatchesInFlight,
        }.WithAddress(options.Address);
        connection.Tls = options.Tls ?? connection.Tls;
        return connection;
    }

    /// <summary>The group name the docs suggest for MANAGER_MQTT_SHARE_GROUP; a kept session's subscriptions in it are
    /// removed when the node runs with another group or none.</summary>
    public const string SuggestedShareGroup = "propeller-manager";

    /// <summary>
    /// What the manager subscribes to, and what an earlier configuration may have left in its kept session.
    /// <para>
    /// With a share group, results, discovery and metrics are shared subscriptions: the broker hands each message to one
    /// node of the group, so with several nodes a result is decided once instead of once per node (the others recorded
    /// <c>task.result_ignored.v1</c>). Received messages carry their real topic, never the <c>$share/…</c> prefix, so the
    /// inbound handler's parsing is the same in both modes. Two topics stay plain subscriptions on every node whatever the
    /// setting: invocation answers (the request waiting for one is in the memory of the node that published the
    /// invocation) and heartbeats with the Last Will (mosquitto 2.0 queues a shared message for a member whose persistent
    /// session is offline instead of passing it to another member, and its round robin can send every heartbeat of a
    /// proplet to the same node: a proplet's liveness must not wait for a node that is down). Results, discovery and
    /// metrics given to a node that is down wait in its session until it returns (docs/operations.md, multi-node).
    /// </para>
    /// <para>
    /// Stale: <c>{base}/#</c> (the one subscription before shared subscriptions existed; it also brought the manager its
    /// own commands and the proxy's chunks), the plain forms of the shared topics with a group, and their forms in
    /// <see cref="SuggestedShareGroup"/> when that is not the group. A session kept from another custom group keeps that
    /// group's subscriptions until the session is dropped (docs/operations.md).
    /// </para>
    /// </summary>
    public static (IReadOnlyList<string> Filters, IReadOnlyList<string> Stale) Filters(string baseTopic, string? shareGroup)
    {
        ArgumentException.ThrowIfNullOrEmpty(baseTopic);
        string[] shared = [Topics.Results, Topics.PropletCreate, Topics.TaskMetrics, Topics.PropletMetrics];
        string[] everyNode = [Topics.PropletAlive, Topics.InvokeResults];
        var group = string.IsNullOrEmpty(shareGroup) ? null : shareGroup;
        string Plain(string topic) => Topics.Of(baseTopic, topic);
        string In(string name, string topic) => $"$share/{name}/{Plain(topic)}";
        var filters = shared.Select(t => group is null ? Plain(t) : In(group, t)).Concat(everyNode.Select(Plain)).ToList();
        var stale = new List<string> { baseTopic + "/#" };
        if (group is not null)
        {
            stale.AddRange(shared.Select(Plain));
        }

        if (!string.Equals(group, SuggestedShareGroup, StringComparison.Ordinal))
        {
            stale.AddRange(shared.Select(t => In(SuggestedShareGroup, t)));
        }

        return (filters, stale);
    }

    /// <summary>Where received messages go, in batches; acknowledged after it returns. Set before connecting.</summary>
    public Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask>? Inbound
    {
        get => Connection.Handler;
        set => Connection.Handler = value;
    }

    public MqttBridgeOptions Options => _options;

    /// <summary>Connected and subscribed to the proplets' topics (readiness).</summary>
    public bool IsReady => Connection.IsConnected;

    /// <summary>The filter and reason of the subscription the broker refused at its last connect (null: none).</summary>
    public string? RefusedSubscription => Connection.RefusedSubscription;

    /// <summary>Publishes a command; a task's starts and stops keep their order (the task id is the order key), at every
    /// QoS: a start the connection lost is sent again after the reconnect, and at QoS 1 its stop, called meanwhile, went
    /// first (the proplet ignored the stop of a task it did not know, then ran it). Invocations of a latent task are not
    /// ordered: each is a call of its own, and in one task's order they waited for one another's acknowledgements.</summary>
    public Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        var orderKey = message.Destination.EndsWith(StartSuffix, StringComparison.Ordinal) || message.Destination.EndsWith(StopSuffix, StringComparison.Ordinal)
            ? TaskIdOf(message.Payload.Span)
            : null;
        return Connection.PublishAsync(message.Destination, message.Payload, _options.QualityOfService, retain: false, orderKey, cancellationToken);
    }

    public ValueTask DisposeAsync()
    {
        _meter.Dispose();
        return Connection.DisposeAsync();
    }

    /// <summary>The top-level "id" of a start or stop payload (null when there is none).</summary>
    internal static string? TaskIdOf(ReadOnlySpan<byte> payload)
    {
        try
        {
            var reader = new Utf8JsonReader(payload);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isId = reader.ValueTextEquals("id"u8);
                reader.Read();
                if (isId)
                {
                    return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                }

                reader.Skip();
            }
        }
        catch (JsonException)
        {
            // not JSON: no order key
        }

        return null;
    }
}
