using MQTTnet.Formatter;

namespace Propeller.Broker.Tests;

/// <summary>The shared mosquitto started by scripts/test.sh (scripts/infra.sh), found through PROPELLER_TEST_MQTT.</summary>
internal static class TestBroker
{
    /// <summary>Documented default: the port scripts/infra.sh uses.</summary>
    public const string DefaultAddress = "tcp://127.0.0.1:51883";

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static string Address => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : DefaultAddress;

    public static BrokerOptions Options(MqttProtocolVersion version, string? clientId = null) => new BrokerOptions
    {
        ProtocolVersion = version,
        ClientId = clientId ?? "t-" + Guid.NewGuid().ToString("N")[..12],
        ReconnectDelay = TimeSpan.FromMilliseconds(100),
        MaxReconnectDelay = TimeSpan.FromSeconds(1),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    }.WithAddress(Address);

    public static string UniqueTopic(string name) => $"propeller-test/{name}/{Guid.NewGuid():N}";
}
