using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;

namespace Propeller.Edge.Tests;

/// <summary>A proplet on a private mosquitto that the test restarts (the shared broker is never touched).</summary>
public sealed class PropletReconnectTests
{
    [Fact]
    public async Task GivenABrokerRestart_WhenThePropletReconnects_ThenItAnnouncesItselfAgainAndTheResultFromTheOutageArrives()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true", ct);
        var settings = TestSettings.Create() with { MqttAddress = $"tcp://127.0.0.1:{broker.Port}", MetricsInterval = TimeSpan.Zero };

        // The observer keeps its session (QoS 1), so nothing published while it reconnects is lost to it.
        var observerOptions = broker.Options(MqttProtocolVersion.V311, "obs-" + Guid.NewGuid().ToString("N")[..8]);
        observerOptions.CleanStart = false;
        await using var observer = new BrokerConnection(observerOptions);
        var observed = Inbox.Of(observer);
        await observer.StartAsync(ct);
        await observer.SubscribeAsync(settings.BaseTopic + "/#", MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        await node.StartAsync(ct);
        await NextAsync(observed, settings.BaseTopic, Topics.PropletCreate, ct);

        // A task that ends (by its time limit) while the broker is down.
        var id = Guid.NewGuid().ToString();
        var start = new StartMessage { Id = id, Name = "main", File = Convert.ToBase64String(Modules.Spin), CliArgs = ["--timeout", "2"] };
        await observer.PublishAsync(Topics.Of(settings.BaseTopic, Topics.Start), JsonSerializer.SerializeToUtf8Bytes(start), MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, ct);
        while (node.Runner.RunningCount == 0)
        {
            await Task.Delay(20, ct);
        }

        await broker.StopAsync(ct);
        while (node.Runner.RunningCount > 0)
        {
            await Task.Delay(20, ct);
        }

        await broker.StartAsync(ct);

        // Both arrive, in either order: the result held through the outage goes out first on the new connection.
        var seen = await CollectAsync(observed, settings.BaseTopic, [Topics.PropletCreate, Topics.Results], ct);
        var result = seen[Topics.Results];
        result.GetProperty("task_id").GetString().ShouldBe(id);
        result.GetProperty("error").GetString().ShouldBe($"Task {id} exceeded its time limit of 2 s and was stopped");
    }

    private static async Task<JsonElement> NextAsync(Inbox observer, string baseTopic, string path, CancellationToken cancellationToken) =>
        (await CollectAsync(observer, baseTopic, [path], cancellationToken))[path];

    /// <summary>Reads until a message arrived on each of <paramref name="paths"/>; returns the first of each.</summary>
    private static async Task<Dictionary<string, JsonElement>> CollectAsync(Inbox observer, string baseTopic, string[] paths, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        var found = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        var seen = new StringBuilder();
        try
        {
            while (found.Count < paths.Length)
            {
                var message = await observer.ReadAsync(timeout.Token);
                seen.Append(message.Topic).Append(' ');
                var path = paths.FirstOrDefault(p => message.Topic == Topics.Of(baseTopic, p));
                if (path is not null && !found.ContainsKey(path))
                {
                    found[path] = JsonSerializer.Deserialize<JsonElement>(message.Payload.Span);
                }
            }

            return found;
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"no message on {string.Join(" or ", paths.Except(found.Keys))}; saw: {seen}", ex);
        }
    }
}
