namespace Propeller.Mqtt;

/// <summary>An application message: what <see cref="MqttClient.PublishAsync(MqttMessage, CancellationToken)"/> sends and what
/// <see cref="MqttClient.Messages"/> yields. The MQTT 5 fields are ignored on an MQTT 3.1.1 connection.</summary>
public sealed class MqttMessage
{
    public required string Topic { get; init; }

    public ReadOnlyMemory<byte> Payload { get; init; }

    public MqttQualityOfService QualityOfService { get; init; }

    public bool Retain { get; init; }

    /// <summary>MQTT 5: seconds after which the broker discards the message if it is still undelivered.</summary>
    public uint? MessageExpiryInterval { get; init; }

    /// <summary>MQTT 5: true when the payload is UTF-8 text (payload format indicator 1).</summary>
    public bool? PayloadIsUtf8 { get; init; }

    public string? ContentType { get; init; }

    public string? ResponseTopic { get; init; }

    public ReadOnlyMemory<byte>? CorrelationData { get; init; }

    public IReadOnlyList<MqttUserProperty> UserProperties { get; init; } = [];

    /// <summary>MQTT 5, received messages only: identifiers of the subscriptions that matched.</summary>
    public IReadOnlyList<uint> SubscriptionIdentifiers { get; init; } = [];
}
