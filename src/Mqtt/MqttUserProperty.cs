namespace Propeller.Mqtt;

/// <summary>An MQTT 5 user property (a name/value pair; names may repeat).</summary>
public readonly record struct MqttUserProperty(string Name, string Value);
