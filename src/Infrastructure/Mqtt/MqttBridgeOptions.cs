using MQTTnet.Formatter;
using MQTTnet.Protocol;

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

    /// <summary>QoS of the subscriptions and of start/stop commands (MANAGER_MQTT_QOS, 2 as in the original).</summary>
    public MqttQualityOfServiceLevel QualityOfService { get; set; } = MqttQualityOfServiceLevel.ExactlyOnce;

    /// <summary>MQTT 5 (default) or 3.1.1 (MANAGER_MQTT_PROTOCOL_VERSION).</summary>
    public MqttProtocolVersion ProtocolVersion { get; set; } = MqttProtocolVersion.V500;

    /// <summary>How long a publish may wait, for the connection included (MANAGER_MQTT_TIMEOUT).</summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>TLS settings (MANAGER_MQTT_TLS_*); an ssl:// address without them uses the system trust store.</summary>
    public Propeller.Broker.BrokerTls? Tls { get; set; }

    /// <summary>Most commands in flight (lowered to the broker's Receive Maximum).</summary>
    public int MaxInflight { get; set; } = 16;

    /// <summary>How long an invocation of a latent task waits for its result (the original's 30 s, spec propeller-manager.md §2.8).</summary>
    public TimeSpan InvokeTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// MANAGER_MQTT_SHARE_GROUP: when set, the manager subscribes to results, discovery and metrics as MQTT shared
    /// subscriptions (<c>$share/{group}/{filter}</c>), so the broker hands each such message to one node of the group
    /// instead of every node; null or empty: plain subscriptions (every node receives everything). Heartbeats, Last Will
    /// and invocation answers stay plain either way (<see cref="ManagerMqtt"/>). Nodes of one deployment use the same group.
    /// </summary>
    public string? ShareGroup { get; set; }

    /// <summary>Use <see cref="ShareGroup"/> only when the broker offers shared subscriptions at connect (MQTT 5's
    /// CONNACK), plain subscriptions otherwise: the default, when MANAGER_MQTT_SHARE_GROUP is unset.</summary>
    public bool ShareGroupIfOffered { get; set; }

    /// <summary>
    /// How long a manager node may go without marking its broker session alive before another node recovers that
    /// session (<see cref="SessionRecovery"/>; MANAGER_NODE_STALE_TIMEOUT, the same timeout after which Wolverine declares
    /// the node dead). Each node marks its own every fifth of this.
    /// </summary>
    public TimeSpan SessionStaleTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The longest one recovery of a gone node's session drains it (<see cref="SessionRecovery"/>). A session still
    /// delivering after this is not ended (that would drop what it still holds): the claim is given up and the session
    /// left as it is, and a later round goes on draining it.
    /// </summary>
    public TimeSpan SessionMaxDrain { get; set; } = TimeSpan.FromMinutes(1);

    public string BaseTopic => Contracts.Mqtt.Topics.Base(Tenant, Channel);
}
