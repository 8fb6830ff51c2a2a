using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>A start the broker can never take: larger than its Maximum Packet Size (a broker of this test's own).</summary>
public sealed class StartPacketSizeTests
{
    private readonly string _tenant = "p" + Guid.NewGuid().ToString("N")[..12];

    private string Base => $"m/{_tenant}/c/ch";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// A task whose module makes its start larger than the broker's max_packet_size fails at once with the broker's
    /// limit as its error; before, the start was tried five times, became a dead letter, and the task stayed Running on a
    /// proplet that never got it. A task with a small module on the same manager and proplet still runs.
    /// </summary>
    [Fact]
    public async Task GivenAStartLargerThanTheBrokersMaximumPacketSize_WhenTheTaskStarts_ThenItFailsWithTheLimitAsItsError_NotADeadLetter()
    {
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true\nmax_packet_size 4096", Ct);
        await using var server = await OwnBrokerManager.StartAsync("start_packet_size", broker, _tenant);
        var http = server.Client;

        var propletId = Guid.NewGuid().ToString();
        var starts = System.Threading.Channels.Channel.CreateUnbounded<string>();
        BrokerConnection? proplet = null;
        proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(broker.Address))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var id = JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!;
                starts.Writer.TryWrite(id);
                await proplet!.PublishAsync($"{Base}/control/proplet/results", JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results = "ran", error = (string?)null }),
                    MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await using var _ = proplet;
        await proplet.StartAsync(Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await proplet.PublishAsync($"{Base}/control/proplet/alive", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await ManagerWaits.AliveAsync(http, propletId);

        var large = await CreateAndStartAsync(http, Convert.ToBase64String(RandomNumberGenerator.GetBytes(6_000)));
        var failed = await ManagerWaits.ForStateAsync(http, large, 4, server.Warnings.ToString);
        failed.GetProperty("error").GetString()!.ShouldContain("maximum packet size of 4096 bytes");
        var history = (await http.GetFromJsonAsync<JsonElement>($"/tasks/{large}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        history.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.failed.v1"], server.Warnings.ToString());

        var small = await CreateAndStartAsync(http, "AGFzbQEAAAA=");
        (await ManagerWaits.ForStateAsync(http, small, 3, server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("ran");
        starts.Reader.TryRead(out var only).ShouldBeTrue();
        only.ShouldBe(small, "the large start never reached the proplet");
        (await http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("total").GetInt32().ShouldBe(0, server.Warnings.ToString());
    }

    private static async Task<string> CreateAndStartAsync(HttpClient http, string module)
    {
        var created = await http.PostAsync("/tasks", new StringContent($$"""{"name":"main","file":"{{module}}"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await http.PostAsync($"/tasks/{id}/start", null, Ct)).EnsureSuccessStatusCode();
        return id;
    }
}
