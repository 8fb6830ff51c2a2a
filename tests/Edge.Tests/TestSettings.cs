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
