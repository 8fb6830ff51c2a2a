namespace Propeller.Mqtt;

/// <summary>MQTT delivery guarantee of a publish or a subscription.</summary>
public enum MqttQualityOfService
{
    /// <summary>QoS 0: fire and forget.</summary>
    AtMostOnce = 0,

    /// <summary>QoS 1: acknowledged with PUBACK; may be delivered more than once.</summary>
    AtLeastOnce = 1,

    /// <summary>QoS 2: four-step handshake; delivered once.</summary>
    ExactlyOnce = 2,
}
