using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Domain.Proplets;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Manager.Wolverine;
using Wolverine;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>What survives a manager restart: unsent start messages (Wolverine's durable outbox) and results sent while it was down (broker session).</summary>
public sealed class RestartTests
{
    private readonly string _tenant = "r" + Guid.NewGuid().ToString("N")[..12];

    private string Base => $"m/{_tenant}/c/ch";

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private Dictionary<string, string> Settings(string broker) => new()
    {
        ["MANAGER_MQTT_ADDRESS"] = broker,
        ["MANAGER_TENANT_ID"] = _tenant,
        ["MANAGER_CHANNEL_ID"] = "ch",
        ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
        ["MANAGER_MQTT_QOS"] = "1",
    };

    private async Task<BrokerConnection> PropletAsync(string propletId, Func<ReceivedMessage, ValueTask>? onStart = null)
    {
        var client = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) => onStart?.Invoke(message) ?? ValueTask.CompletedTask),
        };
        await client.StartAsync(Ct);
        await client.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await PublishAsync(client, "control/proplet/alive", new { proplet_id = propletId, status = "alive" });
        return client;
    }

    private Task PublishAsync(BrokerConnection client, string path, object payload) =>
        client.PublishAsync($"{Base}/{path}", JsonSerializer.SerializeToUtf8Bytes(payload), MqttQualityOfServiceLevel.AtLeastOnce, Ct);

    private static async Task<JsonElement> WaitForAsync(HttpClient http, string id, Func<JsonElement, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var task = await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct);
            if (done(task) || DateTime.UtcNow > deadline)
            {
                return task;
            }

            await Task.Delay(20, Ct);
        }
    }

    private static async Task<string> CreateAndStartAsync(HttpClient http)
    {
        var created = await http.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        return id;
    }

    /// <summary>A manager dispatches a started task to a simulated proplet and stops; the proplet stays connected.</summary>
    private async Task<(BrokerConnection Proplet, string TaskId)> DispatchedThenManagerStoppedAsync(string schema, string propletId)
    {
        var starts = System.Threading.Channels.Channel.CreateUnbounded<string>();
        var proplet = await PropletAsync(propletId, message =>
        {
            starts.Writer.TryWrite(JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!);
            return ValueTask.CompletedTask;
        });
        await using var first = await ManagerServer.StartAsync(schema, Settings(Broker));
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = propletId, status = "alive" });
        var id = await CreateAndStartAsync(first.Client);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        (await starts.Reader.ReadAsync(timeout.Token)).ShouldBe(id);
        return (proplet, id);
    }

    [Fact]
    public async Task ResultsSentWhileTheManagerIsDown_AreHandledAfterRestart()
    {
        var propletId = Guid.NewGuid().ToString();
        var (proplet, id) = await DispatchedThenManagerStoppedAsync("restart_session", propletId);
        await using var _ = proplet;

        // The manager is down: the proplet finishes now. The broker keeps the result for the manager's session.
        await PublishAsync(proplet, "control/proplet/results", new { task_id = id, proplet_id = propletId, results = "while you were away", error = (string?)null });

        await using var second = await ManagerServer.StartAsync("restart_session", Settings(Broker), dropSchema: false);
        var task = await WaitForAsync(second.Client, id, t => t.GetProperty("state").GetInt32() == 3);
        task.GetProperty("results").GetString().ShouldBe("while you were away");
    }

    /// <summary>
    /// The manager down for longer than the liveness window while a proplet runs a task and heartbeats: the checks due
    /// meanwhile run when it starts again, before it has heard anything. The proplet is not taken for dead, and its task
    /// is not dispatched a second time.
    /// </summary>
    [Fact]
    public async Task GivenTheManagerDownForLongerThanTheLivenessWindow_WhenItStartsAgain_ThenTheHeartbeatingPropletKeepsItsTask()
    {
        var propletId = Guid.NewGuid().ToString();
        var settings = new Dictionary<string, string>(Settings(Broker)) { ["MANAGER_PROPLET_LIVENESS_WINDOW"] = "2s", ["MANAGER_PROPLET_RECONNECT_ALLOWANCE"] = "1ms" };
        var starts = System.Threading.Channels.Channel.CreateUnbounded<string>();
        await using var proplet = await PropletAsync(propletId, message =>
        {
            starts.Writer.TryWrite(JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!);
            return ValueTask.CompletedTask;
        });
        await using var heartbeats = HeartbeatLoop.Start(proplet, Base, propletId, Ct);

        string id;
        await using (var first = await ManagerServer.StartAsync("restart_liveness", settings))
        {
            await ManagerWaits.AliveAsync(first.Client, propletId);

            id = await CreateAndStartAsync(first.Client);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            (await starts.Reader.ReadAsync(timeout.Token)).ShouldBe(id);
        }

        await Task.Delay(TimeSpan.FromSeconds(5), Ct);
        await using var second = await ManagerServer.StartAsync("restart_liveness", settings, dropSchema: false);
        await Task.Delay(TimeSpan.FromSeconds(5), Ct); // a few windows with the manager back
        await PublishAsync(proplet, "control/proplet/results", new { task_id = id, proplet_id = propletId, results = "once", error = (string?)null });
        (await WaitForAsync(second.Client, id, t => t.GetProperty("state").GetInt32() == 3)).GetProperty("results").GetString().ShouldBe("once");
        var types = (await second.Client.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"], second.Warnings.ToString());
        starts.Reader.TryRead(out _).ShouldBeFalse("the task was sent again");
    }

    [Fact]
    public async Task StartMessagesNotYetPublished_ArePublishedAfterRestart()
    {
        var propletId = Guid.NewGuid().ToString();
        string id;

        // First life: the broker address is wrong. The proplet is known and alive (seeded directly), so the task is
        // dispatched and its start message committed into Wolverine's durable queue, but it cannot be published.
        await using (var first = await ManagerServer.StartAsync("restart_outbox", Settings("tcp://127.0.0.1:1"), waitUntilReady: false))
        {
            var services = first.Services;
            var proplet0 = new PropletId(propletId);
            var now = DateTimeOffset.UtcNow;
            await services.GetRequiredService<IMessageBus>().InvokeAsync<CommandResult<PropletEvent, PropletState>>(
                RunPropletCommand.For(new PropletCommand.RegisterProplet(proplet0, "Seeded-Proplet", PropletMetadata.Empty, now), EventMetadata.At(now)), Ct);
            await services.GetRequiredService<IPropletRegistry>().RecordHeartbeatAsync(proplet0, now, Ct);
            id = await CreateAndStartAsync(first.Client);
            (await WaitForAsync(first.Client, id, t => t.GetProperty("state").GetInt32() == 2)).GetProperty("state").GetInt32().ShouldBe(2);
        }

        var starts = System.Threading.Channels.Channel.CreateUnbounded<string>();
        await using var proplet = await PropletAsync(propletId, message =>
        {
            starts.Writer.TryWrite(JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!);
            return ValueTask.CompletedTask;
        });
        await using var second = await ManagerServer.StartAsync("restart_outbox", Settings(Broker), dropSchema: false);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        (await starts.Reader.ReadAsync(timeout.Token)).ShouldBe(id);
    }
}
