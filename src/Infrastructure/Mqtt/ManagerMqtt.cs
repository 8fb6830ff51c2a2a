using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Protocol;
using Propeller.Application.Messaging;
using Propeller.Broker;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// The manager's one broker connection (a persistent session under its entity id, unlike the original's clean one:
/// results published while the manager is down wait in the broker for it), subscribed to <c>{base}/#</c>, and the
/// outbox's publisher. Last Will as the original's: <c>{"status":"offline","proplet_id":"&lt;entity id&gt;"}</c> on
/// control/proplet/alive.
/// </summary>
public sealed class ManagerMqtt : IMessagePublisher, IAsyncDisposable
{
    private readonly MqttBridgeOptions _options;

    public ManagerMqtt(IOptions<MqttBridgeOptions> options, ILoggerFactory loggers, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        _options = options.Value;
        var connection = new BrokerOptions
        {
            ClientId = _options.EntityId,
            Username = _options.EntityId,
            Password = _options.ApiKey,
            ProtocolVersion = _options.ProtocolVersion,
            CleanStart = false,
            SessionExpiryInterval = 7 * 24 * 3600,
            OperationTimeout = _options.OperationTimeout,
            MaxInflight = _options.MaxInflight,
            Will = new BrokerWill(
                Contracts.Mqtt.Topics.Of(_options.BaseTopic, Contracts.Mqtt.Topics.PropletAlive),
                System.Text.Encoding.UTF8.GetBytes($$"""{"status":"offline","proplet_id":"{{_options.EntityId}}"}""")),
        }.WithAddress(_options.Address);
        connection.Tls = _options.Tls ?? connection.Tls;
        connection.Subscriptions.Add((_options.BaseTopic + "/#", _options.QualityOfService));
        Connection = new BrokerConnection(connection, loggers.CreateLogger<BrokerConnection>(), time);
    }

    public BrokerConnection Connection { get; }

    /// <summary>Where received messages go, in batches; acknowledged after it returns. Set before connecting.</summary>
    public Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask>? Inbound
    {
        get => Connection.Handler;
        set => Connection.Handler = value;
    }

    public MqttBridgeOptions Options => _options;

    /// <summary>Connected and subscribed to the proplets' topics (readiness).</summary>
    public bool IsReady => Connection.IsConnected;

    /// <summary>Publishes a command; at QoS 2 a task's commands keep their order (the task id is the order key).</summary>
    public Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        var orderKey = _options.QualityOfService == MqttQualityOfServiceLevel.ExactlyOnce ? TaskIdOf(message.Payload.Span) : null;
        return Connection.PublishAsync(message.Destination, message.Payload, _options.QualityOfService, retain: false, orderKey, cancellationToken);
    }

    public ValueTask DisposeAsync() => Connection.DisposeAsync();

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
