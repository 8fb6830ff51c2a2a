using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Contracts.Mqtt;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>A proplet on a private mosquitto with a small max_packet_size (the shared broker is never touched).</summary>
public sealed class PropletPacketSizeTests
{
    /// <summary>A command that writes 3000 bytes of 'x' to stdout: a result larger than 2 KiB, from a module far smaller.</summary>
    private static byte[] WritesThreeThousandBytes => Wat.ToWasm("""
        (module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start") (local $i i32)
            (loop $fill
              (i32.store8 (i32.add (i32.const 64) (local.get $i)) (i32.const 120))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $fill (i32.lt_u (local.get $i) (i32.const 3000))))
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const 3000))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
        """);

    /// <summary>
    /// A result larger than the broker's Maximum Packet Size (its CONNACK, MQTT 5) goes out as an error result naming
    /// both sizes, and the proplet stays connected. It was sent as it was: mosquitto closed the connection for it, the
    /// publish was sent again after every reconnect and retried after every timeout, for ever, and the manager never
    /// heard of the task again.
    /// </summary>
    [Fact]
    public async Task GivenABrokerWithA2KiBMaximumPacketSize_WhenATasksResultIsLarger_ThenAnErrorResultArrivesInstead()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true\nmax_packet_size 2048", ct);
        var settings = TestSettings.Create() with { MqttAddress = broker.Address, MetricsInterval = TimeSpan.Zero, MqttTimeout = TimeSpan.FromSeconds(5) };
        await using var observer = new BrokerConnection(broker.Options(MqttProtocolVersion.V500, "obs-" + Guid.NewGuid().ToString("N")[..8]));
        var observed = Inbox.Of(observer);
        await observer.StartAsync(ct);
        await observer.SubscribeAsync(Topics.Of(settings.BaseTopic, Topics.Results), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        await node.StartAsync(ct);
        var id = Guid.NewGuid().ToString();
        var start = new StartMessage { Id = id, Name = "_start", File = Convert.ToBase64String(WritesThreeThousandBytes) };

        await observer.PublishAsync(Topics.Of(settings.BaseTopic, Topics.Start), JsonSerializer.SerializeToUtf8Bytes(start), MqttQualityOfServiceLevel.AtLeastOnce, ct);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        var message = await observed.ReadAsync(timeout.Token);
        var result = JsonSerializer.Deserialize<JsonElement>(message.Payload.Span);
        result.GetProperty("task_id").GetString().ShouldBe(id);
        result.GetProperty("error").GetString().ShouldNotBeNull().ShouldMatch(@"^Task \S+: its result of \d+ bytes exceeds the broker's maximum packet size of 2048 bytes$");
        node.IsConnected.ShouldBeTrue();
    }
}
