namespace Propeller.Mqtt;

/// <summary>A topic filter (with <c>+</c>/<c>#</c> wildcards) and its options. NoLocal, RetainAsPublished and
/// RetainHandling are MQTT 5 only.</summary>
public sealed record MqttSubscription(string TopicFilter, MqttQualityOfService QualityOfService)
{
    public bool NoLocal { get; init; }

    public bool RetainAsPublished { get; init; }

    /// <summary>0 = send retained messages on subscribe, 1 = only for a new subscription, 2 = never.</summary>
    public byte RetainHandling { get; init; }
}
