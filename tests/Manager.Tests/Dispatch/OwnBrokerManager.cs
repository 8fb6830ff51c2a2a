using Propeller.Broker.Tests;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>A manager on a mosquitto of the test's own (the shared broker is never touched), in the test's tenant, at QoS 1.</summary>
internal static class OwnBrokerManager
{
    public static Task<ManagerServer> StartAsync(string schema, MosquittoProcess broker, string tenant, params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string>
        {
            ["MANAGER_MQTT_ADDRESS"] = broker.Address,
            ["MANAGER_TENANT_ID"] = tenant,
            ["MANAGER_CHANNEL_ID"] = "ch",
            ["MANAGER_ENTITY_ID"] = "manager-" + tenant,
            ["MANAGER_MQTT_QOS"] = "1",
        };
        foreach (var (key, value) in more)
        {
            settings[key] = value;
        }

        return ManagerServer.StartAsync(schema, settings);
    }
}
