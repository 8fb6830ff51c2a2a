using Propeller.Mqtt;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>The manager's broker connection (MANAGER_MQTT_*, MANAGER_TENANT_ID, MANAGER_CHANNEL_ID, MANAGER_ENTITY_ID, MANAGER_API_KEY).</summary>
public sealed class MqttBridgeOptions
{
    /// <summary><c>tcp://host:port</c> (or ssl://).</summary>
    public string Address { get; set; } = "tcp://localhost:1883";

    public string Tenant { get; set; } = "default";

    public string Channel { get; set; } = "default";

    /// <summary>Client id and username (MANAGER_ENTITY_ID).</summary>
    public string EntityId { get; set; } = "manager";

    /// <summary>Password (MANAGER_API_KEY).</summary>
    public string? ApiKey { get; set; }

    public MqttQualityOfService QualityOfService { get; set; } = MqttQualityOfService.ExactlyOnce;

    /// <summary>How many inbound partitions run in parallel (each keeps its task's or proplet's messages in order).</summary>
    public int InboundConcurrency { get; set; } = 8;

    public string BaseTopic => Contracts.Mqtt.Topics.Base(Tenant, Channel);
}
