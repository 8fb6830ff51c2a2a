using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Manager.Tests.Dispatch;

public partial class DispatchTests
{
    /// <summary>
    /// Seeded random proplet messages on every topic the manager reads (results, discovery, heartbeats, metrics, task
    /// metrics, invocation results): the proplet's own messages with fields of the wrong type, left out or added, strings
    /// that break parsers, ids of real tasks and of none, and payloads cut short, wrapped, nested deep or not JSON. They
    /// come from a stranger's connection; the proplet that runs the tasks stays honest. Nothing may change a task that
    /// has ended (a result for it is late and ignored), the manager stays ready, and a task started afterwards still
    /// completes with its result. PROPELLER_FUZZ_SEED and PROPELLER_FUZZ_MESSAGES repeat a run or make it longer.
    /// </summary>
    [Fact]
    public async Task RandomProplets_Messages_ChangeNoEndedTask_AndTheManagerGoesOnDispatching()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_SEED"), out var s) ? s : Random.Shared.Next();
        var messages = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_MESSAGES"), out var n) ? n : 400;
        var random = new Random(seed);
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, start => "ok-" + start.GetProperty("inputs").GetRawText());
        await WaitForAliveAsync(propletId);
        var ended = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ended.Add(await CreateAndStartAsync($$"""{"name":"main","inputs":[{{i}}]}"""));
        }

        var before = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var id in ended)
        {
            var task = await WaitForStateAsync(id, 3);
            task.GetProperty("state").GetInt32().ShouldBe(3, _server.Warnings.ToString());
            before[id] = Comparable(task);
        }

        await using var stranger = new BrokerConnection(new BrokerOptions { ClientId = "fuzz-" + _tenant }.WithAddress(Broker));
        await stranger.StartAsync(Ct);
        string[] tasks = [.. ended, Guid.NewGuid().ToString(), "not-a-task"];
        string[] proplets = [propletId, Guid.NewGuid().ToString(), "", "\u0000"];
        for (var i = 0; i < messages; i++)
        {
            var (path, message) = ProposedMessage(random, tasks, proplets);
            var text = message.ToJsonString();
            byte[] payload = random.Next(10) switch
            {
                0 => Encoding.UTF8.GetBytes(Fuzz.Mutate(text, random)),
                1 => [0xff, 0xfe, .. Encoding.UTF8.GetBytes(text)], // not UTF-8
                _ => Encoding.UTF8.GetBytes(text),
            };
            await stranger.PublishAsync($"{Base}/{path}", payload, Fuzz.Pick(random, [MqttQualityOfServiceLevel.AtMostOnce, MqttQualityOfServiceLevel.AtLeastOnce]), Ct);
        }

        // The proplets the stranger registered (a mutation may have changed the id it drew) go offline, their Last Will,
        // so the next task can only go to the honest one.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var active = await Http.GetFromJsonAsync<JsonElement>("/proplets?status=active&limit=100", Ct);
            var others = active.GetProperty("proplets").EnumerateArray().Select(p => p.GetProperty("id").GetString()!).Where(id => id != propletId).ToList();
            if (others.Count == 0)
            {
                break;
            }

            DateTime.UtcNow.ShouldBeLessThan(deadline, $"seed {seed}: the stranger's proplets stay alive: {string.Join(", ", others)}");
            foreach (var id in others)
            {
                await PublishAsync(stranger, "control/proplet/alive", new { proplet_id = id, status = "offline" });
            }

            await Task.Delay(200, Ct);
        }

        // Handled once a task started after them completes (the manager's inbox handles results in order of arrival).
        var after = await CreateAndStartAsync("""{"name":"main","inputs":[7]}""");
        var completed = await WaitForStateAsync(after, 3);
        completed.GetProperty("state").GetInt32().ShouldBe(3, $"seed {seed}: {completed} (the honest proplet: {propletId})");
        completed.GetProperty("results").GetString().ShouldBe("""ok-["7"]""");
        foreach (var id in ended)
        {
            Comparable(await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).ShouldBe(before[id], $"seed {seed}: an ended task changed");
        }

        (await Http.GetAsync("/health/ready", Ct)).IsSuccessStatusCode.ShouldBeTrue();
        // A message a handler failed on (rather than the inbox refusing it as malformed) would be a dead letter.
        (await Http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("total").GetInt32().ShouldBe(0, $"seed {seed}");
        _server.Warnings.ToString().ShouldNotContain("Unhandled", customMessage: $"seed {seed}");
    }

    /// <summary>A task's answer without its updated_at (a late result may be recorded in its history, not in its state).</summary>
    private static string Comparable(JsonElement task)
    {
        var node = JsonNode.Parse(task.GetRawText())!.AsObject();
        node.Remove("updated_at");
        return node.ToJsonString();
    }

    /// <summary>One of the proplet's messages, its fields mutated.</summary>
    private static (string Path, JsonNode Message) ProposedMessage(Random random, string[] tasks, string[] proplets)
    {
        static string Stranger() => Guid.NewGuid().ToString();

        string Task() => random.Next(5) == 0 ? Fuzz.Pick(random, Fuzz.Strings) : Fuzz.Pick(random, tasks);
        string Proplet() => random.Next(5) == 0 ? Fuzz.Pick(random, Fuzz.Strings) : Fuzz.Pick(random, proplets);
        var (path, message) = random.Next(6) switch
        {
            0 => ("control/proplet/results", new JsonObject
            {
                ["task_id"] = Task(),
                ["proplet_id"] = Proplet(),
                ["results"] = "fuzz",
                ["error"] = null,
                ["attempt"] = random.Next(0, 3),
                ["running"] = false,
            }),
            // A stranger's discovery and heartbeats: a proplet of its own (the honest proplet's Last Will is not the
            // stranger's to send).
            1 => ("control/proplet/create", new JsonObject
            {
                ["proplet_id"] = Stranger(),
                ["namespace"] = "default",
                ["metadata"] = new JsonObject { ["hostname"] = "fuzz", ["total_memory_bytes"] = 1024, ["tags"] = new JsonArray("a") },
                ["tasks"] = new JsonArray(new JsonObject { ["task_id"] = Task(), ["attempt"] = 1 }),
            }),
            2 => ("control/proplet/alive", new JsonObject { ["proplet_id"] = Stranger(), ["status"] = "alive", ["namespace"] = "default" }),
            3 => ("control/proplet/metrics", new JsonObject
            {
                ["proplet_id"] = Proplet(),
                ["namespace"] = "default",
                ["timestamp"] = "2026-12-05T10:00:00Z",
                ["cpu_metrics"] = new JsonObject { ["user_seconds"] = 1.5 },
                ["memory_metrics"] = new JsonObject { ["heap_alloc_bytes"] = 10 },
            }),
            4 => ("control/proplet/task_metrics", new JsonObject
            {
                ["task_id"] = Task(),
                ["proplet_id"] = Proplet(),
                ["timestamp"] = "2026-12-05T10:00:00Z",
                ["metrics"] = new JsonObject { ["cpu_percent"] = 1.0, ["memory_bytes"] = 1024 },
            }),
            _ => ("control/proplet/invoke_results", new JsonObject { ["task_id"] = Task(), ["invocation_id"] = Guid.NewGuid().ToString(), ["results"] = "1", ["error"] = null }),
        };
        foreach (var name in message.Select(p => p.Key).ToList())
        {
            switch (random.Next(10))
            {
                case 0:
                    message.Remove(name);
                    break;
                case 1 or 2:
                    message[name] = Fuzz.AnyValue(random, 1);
                    break;
            }
        }

        if (random.Next(8) == 0)
        {
            message["unknown_" + random.Next(100)] = Fuzz.AnyValue(random, 1);
        }

        return (path, message);
    }
}
