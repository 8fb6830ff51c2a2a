using System.Threading.Channels;
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

/// <summary>A connection's handler that queues what arrives, for the test to read.</summary>
internal sealed class Inbox
{
    private readonly Channel<ReceivedMessage> _messages = Channel.CreateUnbounded<ReceivedMessage>();

    public static Inbox Of(BrokerConnection connection)
    {
        var inbox = new Inbox();
        connection.Handler = (messages, _) =>
        {
            foreach (var message in messages)
            {
                inbox._messages.Writer.TryWrite(message);
            }

            return ValueTask.CompletedTask;
        };
        return inbox;
    }

    public async Task<ReceivedMessage> ReceiveAsync(CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(TestBroker.Timeout);
        return await _messages.Reader.ReadAsync(cts.Token);
    }

    public async Task<bool> NothingAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(wait);
        try
        {
            await _messages.Reader.WaitToReadAsync(cts.Token);
            return false;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return true;
        }
    }
}
