using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Propeller.Application.Messaging;
using Propeller.Mqtt;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// The manager's one broker connection (a persistent session under its entity id, unlike the original's clean one),
/// and the outbox's publisher. Last Will as the original's:
/// <c>{"status":"offline","proplet_id":"&lt;entity id&gt;"}</c> on control/proplet/alive.
/// </summary>
public sealed class ManagerMqtt : IMessagePublisher, IAsyncDisposable
{
    private readonly MqttBridgeOptions _options;

    public ManagerMqtt(IOptions<MqttBridgeOptions> options, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        _options = options.Value;
        var clientOptions = new MqttClientOptions
        {
            ClientId = _options.EntityId,
            Username = _options.EntityId,
            Password = _options.ApiKey,
            ReceiveQueueCapacity = 4096,

            // Acknowledged once the inbound handler accepted (and, for results, stored) the messages: in batches of
            // what has arrived, so that the results of a batch are stored in one statement.
            MessageBatchHandler = (messages, token) => Inbound is { } inbound ? inbound(messages, token) : ValueTask.CompletedTask,

            // A persistent session: results published while the manager is down wait in the broker for it.
            CleanStart = false,
            SessionExpiryInterval = 7 * 24 * 3600,
            Will = new MqttMessage
            {
                Topic = Contracts.Mqtt.Topics.Of(_options.BaseTopic, Contracts.Mqtt.Topics.PropletAlive),
                Payload = System.Text.Encoding.UTF8.GetBytes($$"""{"status":"offline","proplet_id":"{{_options.EntityId}}"}"""),
            },
        }.WithAddress(_options.Address);
        Client = new MqttClient(clientOptions, loggers.CreateLogger<MqttClient>());
    }

    public MqttClient Client { get; }

    /// <summary>Where received messages go; set before connecting (messages received without it are dropped).</summary>
    public Func<IReadOnlyList<MqttMessage>, CancellationToken, ValueTask>? Inbound { get; set; }

    public MqttBridgeOptions Options => _options;

    /// <summary>Connected and subscribed to the proplets' topics (readiness).</summary>
    public bool IsReady => Subscribed && Client.IsConnected;

    internal bool Subscribed { get; set; }

    public Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        return Client.PublishAsync(new MqttMessage { Topic = message.Destination, Payload = message.Payload, QualityOfService = _options.QualityOfService }, cancellationToken);
    }

    public ValueTask DisposeAsync() => Client.DisposeAsync();
}
