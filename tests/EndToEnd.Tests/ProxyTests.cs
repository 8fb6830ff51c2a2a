using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;
using Propeller.Proxy.Oci;

namespace Propeller.EndToEnd.Tests;

/// <summary>Tasks with an <c>image_url</c> at the local registry (scripts/infra.sh), through a propeller-proxy process,
/// run by the shared cluster's proplets; and a corrupted chunk, from a proxy of the test's own.</summary>
[Collection("e2e")]
public sealed class ProxyTests(SharedCluster shared)
{
    private const int Completed = 3;
    private const int Failed = 4;

    private Cluster Cluster => shared.Cluster;

    internal static string Registry => Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY") is { Length: > 0 } value ? value : "127.0.0.1:55000";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenTheProxy_WhenTasksNameImages_ThenTheGoodOneCompletesAndEachBadOneFailsWithItsReason()
    {
        var repository = $"{Registry}/e2e/add-{Guid.NewGuid():N}"[..(Registry.Length + 16)];
        await PushWithTheCommandAsync(Modules.Addition, repository + ":v1");
        using var http = new HttpClient();
        var client = new RegistryClient(http, new RegistryAuth(null, TimeProvider.System), _ => true);
        await client.PushWasmAsync(ImageReference.Parse(repository + ":big"), new byte[300_000], Ct);
        var (proxy, process) = await Cluster.StartProxyAsync(new Dictionary<string, string> { ["PROXY_MAX_ARTIFACT_BYTES"] = "200000", ["PROXY_CHUNK_SIZE"] = "16" }, Ct);
        try
        {
            await RunImageTasksAsync(repository, proxy, http);
        }
        finally
        {
            process.Kill(); // the corrupted-chunk test plays the proxy itself
        }
    }

    private async Task RunImageTasksAsync(string repository, Uri proxy, HttpClient http)
    {
        var good = await StartAsync(repository + ":v1", ["20", "22"]);
        var badReference = await StartAsync("Not A Reference!", []);
        var unknownTag = await StartAsync(repository + ":v404", []);
        var oversized = await StartAsync(repository + ":big", []);

        var task = await Cluster.WaitForTaskAsync(good, t => State(t) is Completed or Failed, Ct);
        State(task).ShouldBe(Completed, task.GetRawText());
        task.GetProperty("results").GetString().ShouldBe("42");
        (await ErrorOfAsync(badReference)).ShouldStartWith("'Not A Reference!' is not an image reference host/repository[:tag|@digest]");
        (await ErrorOfAsync(unknownTag)).ShouldStartWith($"image {repository}:v404: tag v404 not found in {Registry}/");
        (await ErrorOfAsync(oversized)).ShouldBe($"image {repository}:big: the artefact is 300000 bytes, over the proxy's limit of 200000 bytes (PROXY_MAX_ARTIFACT_BYTES)");

        var again = await StartAsync(repository + ":v1", ["1", "2"]);
        (await Cluster.WaitForTaskAsync(again, t => State(t) is Completed or Failed, Ct)).GetProperty("results").GetString().ShouldBe("3");
        (await http.GetStringAsync(new Uri(proxy, "/health"), Ct)).ShouldBe("""{"status":"ok","service":"proxy","mqtt_connected":true}""");
        var metrics = await http.GetStringAsync(new Uri(proxy, "/metrics"), Ct);
        metrics.ShouldContain("\nproxy_fetches_total 1\n");
        metrics.ShouldContain("\nproxy_failures_total 3\n");
        metrics.ShouldContain("\nproxy_fetch_bytes_total " + Modules.Addition.Length + "\n");
    }

    [Fact]
    public async Task GivenACorruptedChunk_WhenTheProxySendsIt_ThenTheTaskFailsWithAVerificationError()
    {
        // The test is the proxy here (no real proxy runs on the channel now: the other test stops its own), answering the
        // request with the module's chunks and its true sha256, one byte flipped in transit.
        var app = "corrupt.invalid/e2e/add:v1";
        await using var fake = new BrokerConnection(new BrokerOptions { ClientId = "fake-proxy-" + Cluster.Tenant }.WithAddress(Cluster.Mqtt));
        var baseTopic = Topics.Base(Cluster.Tenant, "c1");
        // A module no proplet ran before: one that holds the true image verified would run it at the first chunk
        // (docs/proxy.md, "Verified images"), corrupted or not. The addition module plus a custom section (empty name).
        byte[] module = [.. Modules.Addition, 0, 17, 0, .. Guid.NewGuid().ToByteArray()];
        var sha = Convert.ToHexStringLower(SHA256.HashData(module));
        fake.Handler = async (messages, ct) =>
        {
            foreach (var message in messages)
            {
                if (JsonSerializer.Deserialize<RegistryRequestMessage>(message.Payload.Span)?.AppName != app)
                {
                    continue;
                }

                var corrupted = (byte[])module.Clone();
                corrupted[10] ^= 0x5A;
                foreach (var (index, part) in new[] { (0, corrupted[..40]), (1, corrupted[40..]) })
                {
                    var chunk = new ChunkMessage(app, index, 2, Convert.ToBase64String(part)) { Sha256 = sha };
                    await fake.PublishAsync(Topics.Of(baseTopic, Topics.RegistryChunks), JsonSerializer.SerializeToUtf8Bytes(chunk), MqttQualityOfServiceLevel.ExactlyOnce, ct);
                }
            }
        };
        await fake.StartAsync(Ct);
        await fake.SubscribeAsync(Topics.Of(baseTopic, Topics.RegistryRequest), MqttQualityOfServiceLevel.ExactlyOnce, Ct);

        var id = await StartAsync(app, ["1", "2"]);

        (await ErrorOfAsync(id)).ShouldBe($"image {app} failed verification: its chunks hash to sha256 {Convert.ToHexStringLower(SHA256.HashData(Corrupt(module)))}, the proxy sent sha256 {sha} (a chunk was corrupted)");
    }

    private static byte[] Corrupt(byte[] module)
    {
        var copy = (byte[])module.Clone();
        copy[10] ^= 0x5A;
        return copy;
    }

    private async Task<string> StartAsync(string imageUrl, string[] inputs)
    {
        var id = await Cluster.CreateTaskAsync(new { name = "main", image_url = imageUrl, inputs }, Ct);
        await Cluster.StartTaskAsync(id, Ct);
        return id;
    }

    private async Task<string> ErrorOfAsync(string id)
    {
        var task = await Cluster.WaitForTaskAsync(id, t => State(t) is Completed or Failed, Ct);
        State(task).ShouldBe(Failed, task.GetRawText());
        return task.GetProperty("error").GetString().ShouldNotBeNull();
    }

    /// <summary>
    /// `propeller-proxy push` sends PROXY_REGISTRY_USERNAME / _PASSWORD only to PROXY_REGISTRY_URL's host when that is
    /// set: a push to another registry goes without them (and says so; refused here by the registry that wants them).
    /// Before, the serving credentials went to whatever host a reference named.
    /// </summary>
    [Fact]
    public async Task PushCredentials_GoOnlyToTheRegistryTheyAreFor()
    {
        var registry = Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY_AUTH") is { Length: > 0 } value ? value : "127.0.0.1:55001";
        var reference = $"{registry}/push-{Guid.NewGuid():N}/add:v1";
        var credentials = new Dictionary<string, string> { ["PROXY_REGISTRY_USERNAME"] = "propeller", ["PROXY_REGISTRY_PASSWORD"] = "propeller" };

        var elsewhere = await PushAsync(Modules.Addition, reference, new(credentials) { ["PROXY_REGISTRY_URL"] = "registry.example.com" });
        elsewhere.Code.ShouldBe(1, elsewhere.Output);
        elsewhere.Output.ShouldContain("is for registry.example.com (PROXY_REGISTRY_URL), not " + registry);

        var there = await PushAsync(Modules.Addition, reference, new(credentials) { ["PROXY_REGISTRY_URL"] = "http://" + registry });
        there.Code.ShouldBe(0, there.Output);
        (await PushAsync(Modules.Addition, reference, credentials)).Code.ShouldBe(0);
    }

    /// <summary>`propeller-proxy push`, as the demo uses it.</summary>
    private static async Task PushWithTheCommandAsync(byte[] module, string reference)
    {
        var (code, output) = await PushAsync(module, reference, []);
        code.ShouldBe(0, output);
        output.ShouldStartWith($"pushed {reference} ({module.Length} bytes, manifest sha256:");
    }

    private static async Task<(int Code, string Output)> PushAsync(byte[] module, string reference, Dictionary<string, string> env)
    {
        var file = Path.GetTempFileName();
        await File.WriteAllBytesAsync(file, module, Ct);
        try
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in new[] { Cluster.Built("Proxy", "propeller-proxy.dll"), "push", file, reference })
            {
                info.ArgumentList.Add(arg);
            }

            foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("PROXY_REGISTRY_", StringComparison.Ordinal)).ToList())
            {
                info.Environment.Remove(name);
            }

            foreach (var (key, value) in env)
            {
                info.Environment[key] = value;
            }

            using var process = Process.Start(info)!;
            var output = await process.StandardOutput.ReadToEndAsync(Ct) + await process.StandardError.ReadToEndAsync(Ct);
            await process.WaitForExitAsync(Ct);
            return (process.ExitCode, output);
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static int State(JsonElement task) => task.GetProperty("state").GetInt32();
}
