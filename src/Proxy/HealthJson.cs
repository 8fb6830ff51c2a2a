using System.Text.Json.Serialization;

namespace Propeller.Proxy;

/// <summary><c>GET /health</c>: the original's <c>{"status":"ok","service":"proxy"}</c> and whether MQTT is connected.</summary>
internal sealed record HealthJson(
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("service")] string Service,
    [property: JsonPropertyName("mqtt_connected")] bool MqttConnected);
