using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MQTTnet.Protocol;
using Propeller.Application.Messaging;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Infrastructure.Mqtt;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>The manager's broker connection while its host stops, on real PostgreSQL and mosquitto.</summary>
public sealed class BridgeShutdownTests
{
    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// Once the host begins to stop, what the manager sends still goes out (Wolverine drains its broker queue as it stops:
    /// starts committed by requests still being served, timers), and nothing more it receives is handled: a result
    /// arriving then is held unacknowledged, and the broker delivers it to the next session. Before, the connection
    /// closed as the host began to stop, and each such publish failed (ObjectDisposedException) and used up its retries:
    /// after a slow stop a start went to the dead letters while its task stayed Running.
    /// </summary>
    [Fact]
    public async Task WhileTheHostStops_PublishesStillGoOut_AndWhatArrivesIsNotHandled()
    {
        var tenant = "s" + Guid.NewGuid().ToString("N")[..12];
        var baseTopic = $"m/{tenant}/c/ch";
        await using var server = await ManagerServer.StartAsync("bridge_shutdown", new Dictionary<string, string>
        {
            ["MANAGER_MQTT_ADDRESS"] = Broker,
            ["MANAGER_TENANT_ID"] = tenant,
            ["MANAGER_CHANNEL_ID"] = "ch",
            ["MANAGER_ENTITY_ID"] = "manager-" + tenant,
            ["MANAGER_MQTT_QOS"] = "1",
        });
        var handled = 0;
        server.Services.GetRequiredService<InboundHandler>().ResultsHook = results =>
        {
            Interlocked.Add(ref handled, results.Count);
            return Task.CompletedTask;
        };
        var received = Channel.CreateUnbounded<string>();
        await using var observer = new BrokerConnection(new BrokerOptions { ClientId = "observer-" + tenant }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                received.Writer.TryWrite(Encoding.UTF8.GetString(message.Payload.Span));
                return ValueTask.CompletedTask;
            }),
        };
        await observer.StartAsync(Ct);
        await observer.SubscribeAsync($"{baseTopic}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        string Result() => JsonSerializer.Serialize(new { task_id = Guid.NewGuid().ToString(), proplet_id = Guid.NewGuid().ToString(), results = "42", attempt = 1 });
        await observer.PublishAsync($"{baseTopic}/control/proplet/results", Encoding.UTF8.GetBytes(Result()), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await ManagerWaits.UntilAsync(() => Task.FromResult(Volatile.Read(ref handled) == 1), "a result handled while running", detail: server.Warnings.ToString);

        var bridge = server.Services.GetServices<IHostedService>().OfType<IHostedLifecycleService>().Single(s => s.GetType().Name == "MqttBridgeHostedService");
        await bridge.StoppingAsync(Ct);

        var mqtt = server.Services.GetRequiredService<ManagerMqtt>();
        await mqtt.PublishAsync(new OutgoingMessage($"{baseTopic}/control/manager/start", """{"id":"after-stopping"}"""u8.ToArray()), Ct);
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            timeout.CancelAfter(TimeSpan.FromSeconds(20));
            (await received.Reader.ReadAsync(timeout.Token)).ShouldBe("""{"id":"after-stopping"}""");
        }

        var held = Result();
        await observer.PublishAsync($"{baseTopic}/control/proplet/results", Encoding.UTF8.GetBytes(held), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await Task.Delay(1000, Ct);
        Volatile.Read(ref handled).ShouldBe(1, "a result handled after the host began to stop");

        await bridge.StoppedAsync(Ct);
        mqtt.Connection.IsConnected.ShouldBeFalse();

        // Not acknowledged: the broker delivers it again to the session's next connection (the next start of this node).
        var again = Channel.CreateUnbounded<string>();
        await using var next = new BrokerConnection(new BrokerOptions { ClientId = "manager-" + tenant, CleanStart = false, SessionExpiryInterval = 60 }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                again.Writer.TryWrite(Encoding.UTF8.GetString(message.Payload.Span));
                return ValueTask.CompletedTask;
            }),
        };
        await next.StartAsync(Ct);
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            timeout.CancelAfter(TimeSpan.FromSeconds(20));
            while (await again.Reader.ReadAsync(timeout.Token) != held)
            {
                // the first result too, when its batch was still being acknowledged as the host began to stop
            }
        }

        await next.EndSessionAsync(Ct);
    }
}
