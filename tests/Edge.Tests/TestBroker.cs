namespace Propeller.Edge.Tests;

/// <summary>The shared mosquitto started by scripts/test.sh (scripts/infra.sh), found through PROPELLER_TEST_MQTT.</summary>
internal static class TestBroker
{
    public const string DefaultAddress = "tcp://127.0.0.1:51883";

    public static string Address => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : DefaultAddress;
}
