using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Formatter;

namespace Propeller.Edge.Tests;

/// <summary>How a proplet gets its first connection: the protocol version it is set to, and what it serves meanwhile.</summary>
public sealed class PropletConnectTests
{
    /// <summary>
    /// A proplet set to MQTT 3.1.1 connects: the Maximum Packet Size it always sets (PROPLET_MQTT_MAX_PACKET_SIZE) is an
    /// MQTT 5 field, and MQTTnet refused every connect that carried it under 3.1.1, so the proplet never connected.
    /// </summary>
    [Fact]
    public async Task GivenMqtt311AndAMaxPacketSize_WhenThePropletStarts_ThenItConnects()
    {
        var ct = TestContext.Current.CancellationToken;
        var settings = TestSettings.Create() with { MqttProtocolVersion = MqttProtocolVersion.V311, MaxPacketSize = 1024 * 1024, MetricsInterval = TimeSpan.Zero };
        await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(15));

        await node.StartAsync(limit.Token);

        node.IsConnected.ShouldBeTrue();
    }

    /// <summary>
    /// While the broker cannot be reached the proplet's /health answers (a liveness probe passes during the retries; the
    /// metrics server started only after the first connect, and the port refused connections until then); a start
    /// given up before it connected closes the port again.
    /// </summary>
    [Fact]
    public async Task GivenNoBroker_WhenThePropletIsStillConnecting_ThenHealthAnswers_AndAStartGivenUpClosesThePort()
    {
        var ct = TestContext.Current.CancellationToken;
        var metricsPort = FreePort();
        var settings = TestSettings.Create() with { MqttAddress = $"tcp://127.0.0.1:{FreePort()}", MetricsEnabled = true, MetricsPort = metricsPort };
        await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        using var giveUp = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var starting = node.StartAsync(giveUp.Token);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{metricsPort}/"), Timeout = TimeSpan.FromSeconds(5) };

        var health = await AnswerAsync(http, TimeSpan.FromSeconds(10), ct);

        health.ShouldNotBeNull().StatusCode.ShouldBe(HttpStatusCode.OK);
        starting.IsCompleted.ShouldBeFalse();
        node.IsConnected.ShouldBeFalse();
        await giveUp.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(starting);
        using var probe = new TcpClient();
        await Should.ThrowAsync<SocketException>(async () => await probe.ConnectAsync(IPAddress.Loopback, metricsPort, ct));
    }

    /// <summary>GET /health until it answers or <paramref name="within"/> has passed (null then).</summary>
    private static async Task<HttpResponseMessage?> AnswerAsync(HttpClient http, TimeSpan within, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                return await http.GetAsync("health", cancellationToken);
            }
            catch (HttpRequestException)
            {
                await Task.Delay(100, cancellationToken);
            }
        }

        return null;
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
