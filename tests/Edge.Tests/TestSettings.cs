using Propeller.Edge.Configuration;

namespace Propeller.Edge.Tests;

internal static class TestSettings
{
    public static PropletSettings Create(string? entityId = null, string? tenant = null) => new()
    {
        TenantId = tenant ?? "t-" + Guid.NewGuid().ToString("N")[..8],
        ChannelId = "c1",
        EntityId = entityId ?? "p-" + Guid.NewGuid().ToString("N")[..8],
        ApiKey = "key",
        MqttAddress = TestBroker.Address,
        MaxConcurrentTasks = 4,
        OutputLimit = 4096,
        MetricsEnabled = false,
    };
}

/// <summary>The shared mosquitto started by scripts/test.sh (scripts/infra.sh), found through PROPELLER_TEST_MQTT.</summary>
internal static class TestBroker
{
    public const string DefaultAddress = "tcp://127.0.0.1:51883";

    public static string Address => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : DefaultAddress;
}
