using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Proxy.Tests;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>
/// Seeded random manager messages against a proplet on the real mosquitto: starts (the manager's own, with fields of the
/// wrong type, left out or added, modules cut or changed, names and inputs drawn at random), stops and invocations of
/// the tasks it was sent and of none, the proxy's chunks of the images those starts name (JSON and binary, their
/// headers drawn at random), and payloads cut short, wrapped, nested deep or not UTF-8. The proplet must go on
/// (nothing it logs above a warning) and afterwards a sound start completes with its result. PROPELLER_FUZZ_SEED and PROPELLER_FUZZ_MESSAGES repeat a run or
/// make it longer.
/// </summary>
public sealed class PropletFuzzTests : IAsyncLifetime
{
    private static readonly string[] Strings =
        ["", "a", "main", "_start", "add", "\u0000", "é漢字🙂", "{", "null", "-1", "0", "1", "1e999", "99999999999999999999", "5s", "AGFzbQEAAAA=", "not base64!", new string('x', 5000)];

    /// <summary>The images the fuzzed starts name, and the fuzzed chunks carry.</summary>
    private static readonly string[] Images = ["registry.invalid/none:v1", "", "::", "localhost:1/a:b", "docker.io/fuzz/app:v1"];

    // Every task ends within 2 s (a mutated module may loop): the fuzz does not fill the proplet's slots.
    private readonly PropletSettings _settings = TestSettings.Create() with { TaskTimeout = TimeSpan.FromSeconds(2), LivelinessInterval = TimeSpan.FromSeconds(1) };

    private BrokerConnection _manager = null!;
    private Inbox _results = null!;
    private readonly LogLines _log = new();

    private PropletNode _node = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _manager = new BrokerConnection(new BrokerOptions { ClientId = "fuzz-" + Guid.NewGuid().ToString("N")[..8] }.WithAddress(TestBroker.Address));
        _results = Inbox.Of(_manager);
        await _manager.StartAsync(Ct);
        await _manager.SubscribeAsync(Topics.Of(_settings.BaseTopic, Topics.Results), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        _node = new PropletNode(_settings, LoggerFactory.Create(b => b.AddProvider(_log).SetMinimumLevel(LogLevel.Warning)), TimeProvider.System);
        await _node.StartAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await _node.DisposeAsync();
        await _manager.DisposeAsync();
    }

    [Fact]
    public async Task RandomManagerMessages_LeaveTheProplet_RunningTheNextSoundStart()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_SEED"), out var s) ? s : Random.Shared.Next();
        var messages = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_MESSAGES"), out var n) ? n : 200;
        var random = new Random(seed);
        byte[][] modules = [Modules.Addition, Modules.Numbers, Modules.Hello, Modules.Trap, Components.Calculator];
        var sent = new List<string>();
        for (var i = 0; i < messages; i++)
        {
            if (random.Next(8) == 0)
            {
                await PublishChunkAsync(random, modules);
                continue;
            }

            var (path, message) = random.Next(6) switch
            {
                < 4 => (Topics.Start, Start(random, modules, sent)),
                4 => (Topics.Stop, new JsonObject { ["id"] = sent.Count > 0 && random.Next(2) == 0 ? sent[random.Next(sent.Count)] : Guid.NewGuid().ToString(), ["proplet_id"] = _settings.EntityId }),
                _ => (Topics.Invoke, new JsonObject { ["id"] = sent.Count > 0 ? sent[random.Next(sent.Count)] : Guid.NewGuid().ToString(), ["invocation_id"] = Guid.NewGuid().ToString(), ["inputs"] = new JsonArray("1", "2") }),
            };
            Mutate(message, random);
            var text = message.ToJsonString();
            byte[] payload = random.Next(12) switch
            {
                0 => Encoding.UTF8.GetBytes(text[..random.Next(text.Length + 1)]),
                1 => Encoding.UTF8.GetBytes("[" + text + "]"),
                2 => Encoding.UTF8.GetBytes(new string('[', 5000)),
                3 => [0xff, 0xfe, .. Encoding.UTF8.GetBytes(text)],
                _ => Encoding.UTF8.GetBytes(text),
            };
            await _manager.PublishAsync(Topics.Of(_settings.BaseTopic, path), payload, MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, Ct);
        }

        // Whatever still runs is stopped; then a sound start must complete with its result.
        foreach (var id in sent)
        {
            await _manager.PublishAsync(Topics.Of(_settings.BaseTopic, Topics.Stop), JsonSerializer.SerializeToUtf8Bytes(new { id, proplet_id = _settings.EntityId }), MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, Ct);
        }

        var sound = Guid.NewGuid().ToString();
        var start = new StartMessage { Id = sound, Name = "main", File = Modules.AdditionBase64, Inputs = ["10", "32"], PropletId = _settings.EntityId };
        await _manager.PublishAsync(Topics.Of(_settings.BaseTopic, Topics.Start), JsonSerializer.SerializeToUtf8Bytes(start), MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, Ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        var results = 0;
        while (true)
        {
            var result = JsonSerializer.Deserialize<JsonElement>((await _results.ReadAsync(timeout.Token)).Payload.Span);
            results++;
            if (result.GetProperty("task_id").GetString() == sound)
            {
                result.GetProperty("results").GetString().ShouldBe("42", $"seed {seed}: {result}");
                break;
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}: {messages} messages, {sent.Count} starts, {results} results before the sound one's");
        // Bad input is a warning (logged, answered or ignored); an error would be the proplet failing on it.
        _log.Lines.Where(l => l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal)).ShouldBeEmpty($"seed {seed}");
        TestContext.Current.TestOutputHelper?.WriteLine(string.Join("\n", _log.Lines.GroupBy(l => l.Length > 90 ? l[..90] : l).OrderByDescending(g => g.Count()).Select(g => $"{g.Count(),5} {g.Key}")));
    }

    /// <summary>A start as the manager sends it: a module (sound, or cut or changed), a name, inputs and options drawn at random.</summary>
    private JsonObject Start(Random random, byte[][] modules, List<string> sent)
    {
        var module = modules[random.Next(modules.Length)];
        if (random.Next(3) == 0)
        {
            module = [.. module];
            module[random.Next(module.Length)] ^= (byte)(1 << random.Next(8));
        }

        var id = Guid.NewGuid().ToString();
        sent.Add(id);
        var start = new JsonObject
        {
            ["id"] = id,
            ["name"] = Pick(random, ["main", "add", "_start", "half", "nothing", "nope"]),
            ["file"] = Convert.ToBase64String(module),
            ["inputs"] = new JsonArray([.. Enumerable.Range(0, random.Next(0, 4)).Select(_ => (JsonNode?)JsonValue.Create(Pick(random, Strings)))]),
            ["cli_args"] = new JsonArray(),
            ["daemon"] = random.Next(6) == 0,
            ["latent"] = random.Next(8) == 0,
            ["env"] = new JsonObject { ["A"] = "1" },
            ["proplet_id"] = _settings.EntityId,
            ["attempt"] = random.Next(1, 3),
        };
        if (random.Next(4) == 0)
        {
            start["monitoring_profile"] = new JsonObject { ["enabled"] = true, ["interval"] = Pick(random, ["1s", "0s", "-1s", "x", "100h"]) };
        }

        if (random.Next(10) == 0)
        {
            start.Remove("file");
            start["image_url"] = Pick(random, Images);
        }

        return start;
    }

    /// <summary>
    /// A chunk of one of <see cref="Images"/> (which the proplet asks the proxy for when a start names it) as the proxy
    /// sends it, JSON (base64 data) or binary (a header line, then the bytes), with its index, count, length, digest or
    /// data drawn at random: chunks out of range, lengths that lie, images that never complete, bytes that are no module.
    /// </summary>
    private async Task PublishChunkAsync(Random random, byte[][] modules)
    {
        var image = Pick(random, Images);
        var bytes = random.Next(3) == 0 ? modules[random.Next(modules.Length)] : Encoding.UTF8.GetBytes(Pick(random, Strings));
        var total = Pick(random, [1, 1, 2, 3, 0, -1, int.MaxValue]);
        var index = Pick(random, [0, 0, 1, 2, -1, total, int.MaxValue]);
        if (random.Next(2) == 0)
        {
            var chunk = new JsonObject
            {
                ["app_name"] = image,
                ["chunk_idx"] = index,
                ["total_chunks"] = total,
                ["data"] = random.Next(6) == 0 ? Pick(random, Strings) : Convert.ToBase64String(bytes),
            };
            Mutate(chunk, random);
            await _manager.PublishAsync(Topics.Of(_settings.BaseTopic, Topics.RegistryChunks), Encoding.UTF8.GetBytes(chunk.ToJsonString()), MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, Ct);
            return;
        }

        var header = new JsonObject
        {
            ["app_name"] = image,
            ["chunk_idx"] = index,
            ["total_chunks"] = total,
            ["length"] = Pick(random, [bytes.Length, bytes.Length, 0, bytes.Length + 1, -1, int.MaxValue]),
            ["sha256"] = random.Next(2) == 0 ? Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)) : Pick(random, Strings),
            ["size"] = bytes.Length,
        };
        Mutate(header, random);
        byte[] payload = random.Next(8) == 0 ? bytes : [.. Encoding.UTF8.GetBytes(header.ToJsonString()), (byte)'\n', .. bytes];
        await _manager.PublishAsync(Topics.Of(_settings.BaseTopic, Topics.RegistryBinaryChunks), payload, MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, Ct);
    }

    /// <summary>Some fields of <paramref name="message"/> given a value of another type or left out, sometimes one added.</summary>
    private static void Mutate(JsonObject message, Random random)
    {
        foreach (var name in message.Select(p => p.Key).ToList())
        {
            switch (random.Next(14))
            {
                case 0:
                    message.Remove(name);
                    break;
                case 1:
                    message[name] = random.Next(4) switch
                    {
                        0 => null,
                        1 => JsonValue.Create(random.Next(2) == 0),
                        2 => JsonValue.Create(Pick(random, [-1.0, 0.0, 1e308, 3.5])),
                        _ => JsonValue.Create(Pick(random, Strings)),
                    };
                    break;
                case 2:
                    message[name] = new JsonObject { ["nested"] = new JsonArray(1, "two", null) };
                    break;
            }
        }

        if (random.Next(8) == 0)
        {
            message["unknown_" + random.Next(100)] = Pick(random, Strings);
        }
    }

    private static T Pick<T>(Random random, IReadOnlyList<T> items) => items[random.Next(items.Count)];
}
