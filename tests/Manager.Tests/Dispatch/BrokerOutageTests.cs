using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>The broker down for longer than the liveness window while a proplet runs a task (a broker of this test's own).</summary>
public sealed class BrokerOutageTests
{
    private readonly string _tenant = "b" + Guid.NewGuid().ToString("N")[..12];

    private string Base => $"m/{_tenant}/c/ch";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// While the broker is down the manager hears no heartbeat from anyone; the liveness checks due then must not take
    /// that for the proplets' silence. Once the broker is back and the proplet heartbeats again, it keeps its task: not
    /// marked offline, the task not dispatched a second time.
    /// </summary>
    [Fact]
    public async Task GivenTheBrokerDownForLongerThanTheLivenessWindow_WhenItReturns_ThenTheHeartbeatingPropletKeepsItsTask()
    {
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true", Ct);
        await using var server = await OwnBrokerManager.StartAsync(
            "broker_outage_liveness", broker, _tenant,
            ("MANAGER_PROPLET_LIVENESS_WINDOW", "2s"),
            ("MANAGER_PROPLET_RECONNECT_ALLOWANCE", "3s")); // the proplet's reconnect here (500 ms doubling to 1 s) takes ≤ 1 s
        var http = server.Client;

        var propletId = Guid.NewGuid().ToString();
        var starts = System.Threading.Channels.Channel.CreateUnbounded<string>();
        // Its reconnect backoff capped at 1 s: the default (0.5 s doubling to 30 s) had grown to a 4–8 s wait by the end of
        // the outage, and a try just before the broker returned left it silent past the 3 s allowance (seen in CI).
        await using var proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId, MaxReconnectDelay = TimeSpan.FromSeconds(1) }.WithAddress(broker.Address))
        {
            Handler = Inbox.Each((message, _) =>
            {
                starts.Writer.TryWrite(JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!);
                return ValueTask.CompletedTask;
            }),
        };
        await proplet.StartAsync(Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await using var heartbeats = HeartbeatLoop.Start(proplet, Base, propletId, Ct);

        await ManagerWaits.AliveAsync(http, propletId);

        var created = await http.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await http.PostAsync($"/tasks/{id}/start", null, Ct)).EnsureSuccessStatusCode();
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            (await starts.Reader.ReadAsync(timeout.Token)).ShouldBe(id);
        }

        await broker.StopAsync(Ct);
        await Task.Delay(TimeSpan.FromSeconds(6), Ct);
        await broker.StartAsync(Ct);
        await proplet.WaitConnectedAsync(Ct);
        await ManagerWaits.ReadyAsync(http, server.Warnings.ToString); // the manager connected again
        await Task.Delay(TimeSpan.FromSeconds(5), Ct); // a few windows with the broker back

        await proplet.PublishAsync($"{Base}/control/proplet/results", JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results = "once", error = (string?)null }),
            MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        (await ManagerWaits.ForStateAsync(http, id, 3, server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("once");
        var types = (await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"], server.Warnings.ToString());
        starts.Reader.TryRead(out _).ShouldBeFalse("the task was sent again");
    }

    /// <summary>
    /// A task dispatched just as the broker went away: its start message waits in PostgreSQL and is tried again for as
    /// long as the broker stays away, then sent. Before, it became a dead letter after five tries (~40 s with a 1 s
    /// MANAGER_MQTT_TIMEOUT, ~2.5 min with the default), and the task stayed Running on a proplet that never got it.
    /// </summary>
    [Fact]
    public async Task GivenAStartMessageWhileTheBrokerIsDownForLong_WhenItReturns_ThenTheStartIsSent_NotADeadLetter()
    {
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true", Ct);
        await using var server = await OwnBrokerManager.StartAsync(
            "broker_outage_start", broker, _tenant,
            ("MANAGER_MQTT_TIMEOUT", "1s"),
            ("MANAGER_PROPLET_LIVENESS_WINDOW", "2m")); // the proplet stays placeable through the outage
        var http = server.Client;

        // With a kept session (PROPLET_MQTT_CLEAN_SESSION=false), as a start sent while it reconnects must reach it.
        var propletId = Guid.NewGuid().ToString();
        BrokerConnection? proplet = null;
        proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId, CleanStart = false, SessionExpiryInterval = 3600 }.WithAddress(broker.Address))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var id = JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString();
                await proplet!.PublishAsync($"{Base}/control/proplet/results", JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results = "sent late", error = (string?)null }),
                    MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await using var _ = proplet;
        await proplet.StartAsync(Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await proplet.PublishAsync($"{Base}/control/proplet/alive", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await ManagerWaits.AliveAsync(http, propletId);

        await broker.StopAsync(Ct);
        var created = await http.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await http.PostAsync($"/tasks/{id}/start", null, Ct)).EnsureSuccessStatusCode();

        // Past every bounded retry of the start (5 tries of 1 s after 0.1, 1, 5 and 30 s): a sixth failed try, logged (a
        // dead letter after the fifth is tried no more), rather than a time that a slow machine may not have used up.
        await ManagerWaits.UntilAsync(
            () => Task.FromResult(server.Warnings.ToString().Split('\n').Count(line => line.Contains("Failed to process message Propeller.Manager.Wolverine.PublishToBroker", StringComparison.Ordinal)) > 5),
            "a sixth failed try of the start", TimeSpan.FromSeconds(120), server.Warnings.ToString);
        (await http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("total").GetInt32().ShouldBe(0, server.Warnings.ToString());

        await broker.StartAsync(Ct);
        (await ManagerWaits.ForStateAsync(http, id, 3, server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("sent late");
    }
}
