namespace Propeller.Mqtt.Tests;

/// <summary>The shared mosquitto started by scripts/test.sh (scripts/infra.sh), found through PROPELLER_TEST_MQTT.</summary>
internal static class TestBroker
{
    /// <summary>Documented default: the port scripts/infra.sh uses.</summary>
    public const string DefaultAddress = "tcp://127.0.0.1:51883";

    public static string Address => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : DefaultAddress;

    public static MqttClientOptions Options(MqttProtocolVersion version, string? clientId = null) => new MqttClientOptions
    {
        ProtocolVersion = version,
        ClientId = clientId ?? "t-" + Guid.NewGuid().ToString("N")[..12],
        ReconnectDelay = TimeSpan.FromMilliseconds(100),
        MaxReconnectDelay = TimeSpan.FromSeconds(1),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    }.WithAddress(Address);

    public static string UniqueTopic(string name) => $"propeller-test/{name}/{Guid.NewGuid():N}";

    public static async Task<MqttMessage> ReceiveAsync(MqttClient client, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        return await client.Messages.ReadAsync(cts.Token);
    }

    public static async Task<bool> NothingReceivedAsync(MqttClient client, TimeSpan wait, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(wait);
        try
        {
            await client.Messages.WaitToReadAsync(cts.Token);
            return false;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return true;
        }
    }
}
