using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Protocol;
using Propeller.Bench.EndToEnd;
using Propeller.Bench.Support;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;
using Propeller.Proxy.Configuration;
using Propeller.Proxy.Oci;
using Propeller.Proxy.Serving;

namespace Propeller.Bench.Proxy;

/// <summary>
/// `proxy`: a module of --size bytes (default 5 MiB: the addition module padded with a custom section) from the local
/// registry (PROPELLER_TEST_REGISTRY, scripts/infra.sh) to a real proplet process, time from the start message to the
/// result (time to first run) and MB/s, four ways in the same run, each with a fresh artefact per round:
/// `direct` (reference): the task's image_url is the blob's registry URL, which the proplet GETs itself;
/// `direct-again`: the same blob again (the proplet's compiled-module cache is warm);
/// `proxy`: an OCI reference through propeller-proxy (in this process) and MQTT chunks, pulled from the registry;
/// `proxy-cached`: the same reference again, served from the proxy's cache.
/// Ratios: direct/proxy (target ≥ 0.5) and direct-again/proxy-cached (target ≥ 1.0). Options: --size BYTES,
/// --rounds N (45; medians: with 15 the cached ratio of one run swung 0.91–1.24 around ~1.05, session 16), --chunk BYTES (PROXY_CHUNK_SIZE, 128000), --qos N (the proxy's, 2), --cases a,b (a subset),
/// --warmup N (rounds of every case at full size before the clock runs, 20: the JIT tiers the proplet's receive path up
/// in the first rounds, session 8; with 5 a profile still showed ~16 % of the proplet's CPU in the JIT, session 11), --broker-pid PID (the broker's CPU time per run goes in the CPU columns; by default
/// the process listening on the broker's port, found through /proc), --image-cache BYTES (the proplet's
/// PROPLET_IMAGE_CACHE_BYTES; 0: every delivery is assembled and hashed), --settle MS (pause after each run, 30),
/// --format binary|json|both (the chunk format the proxy answers the proplet's requests with: binary, the default, on
/// registry/chunk, as our proplet asks; json, as the original proxy does; both: the proxy cases twice per round, binary
/// and then `proxy-json`/`proxy-cached-json` with a fresh artefact, alternating in one run, session 11).
/// After each run the benchmark waits until the proxy has published every chunk of it (a proplet served from its
/// verified images answers before the delivery ends) and then --settle ms, so that no run's leftover work falls into
/// the next one's time or CPU; `delivered_ms` is the time until the proxy's last chunk went out (session 9).
/// </summary>
internal static class ProxyBenchmark
{
    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var broker = Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } mqtt ? mqtt : "tcp://127.0.0.1:51883";
        var registry = Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY") is { Length: > 0 } r ? r : "127.0.0.1:55000";
        BenchArgs.Known(args, ["--size", "--rounds", "--chunk", "--qos", "--warmup", "--settle", "--image-cache", "--format", "--cases", "--broker-pid"]);
        var size = BenchArgs.Int(args, "--size", 5 << 20);
        var rounds = BenchArgs.Int(args, "--rounds", 45);
        var chunk = BenchArgs.Int(args, "--chunk", ProxySettings.DefaultChunkSize);
        var qos = (MqttQualityOfServiceLevel)BenchArgs.Int(args, "--qos", 2, min: 0);
        if (qos > MqttQualityOfServiceLevel.ExactlyOnce)
        {
            throw new BenchUsageException($"--qos {(int)qos}: 0, 1 or 2");
        }

        var warmups = BenchArgs.Int(args, "--warmup", 20, min: 0);
        var settle = TimeSpan.FromMilliseconds(BenchArgs.Int(args, "--settle", 30, min: 0));
        var imageCache = BenchArgs.Value(args, "--image-cache");
        if (imageCache is not null)
        {
            BenchArgs.ParseInt("--image-cache", imageCache, min: 0);
        }

        var format = BenchArgs.Value(args, "--format") ?? "binary";
        if (format is not ("binary" or "json" or "both"))
        {
            throw new BenchUsageException($"--format {format}: binary, json or both");
        }

        var mosquitto = BenchArgs.Int(args, "--broker-pid", 0, min: 0) is > 0 and var given ? given : ListeningPid(new Uri(broker.Contains("://", StringComparison.Ordinal) ? broker : "tcp://" + broker).Port);
        var tenant = "bench-proxy-" + Guid.NewGuid().ToString("N")[..8];
        var baseTopic = Topics.Base(tenant, "bench");
        Console.WriteLine($"# proxy size={size}B rounds={rounds} warmup={warmups} chunk={chunk}B proxy_qos={(int)qos} registry={registry} broker={broker} broker_pid={(mosquitto > 0 ? mosquitto : "unknown")} image_cache={imageCache ?? "default"} format={format} settle_ms={settle.TotalMilliseconds} load={File.ReadAllText("/proc/loadavg").Trim()}");

        using var http = new HttpClient();
        var client = new RegistryClient(http, new RegistryAuth(null, TimeProvider.System), _ => true);
        var settings = new ProxySettings
        {
            TenantId = tenant,
            ChannelId = "bench",
            EntityId = "proxy-" + tenant,
            ApiKey = "bench",
            MqttAddress = broker,
            ChunkSize = chunk,
            Qos = qos,
            MaxArtifactBytes = 256L << 20,
        };
        await using var proxy = new ProxyNode(settings, NullLoggerFactory.Instance, TimeProvider.System) { BinaryChunks = format != "json" };
        await proxy.StartAsync(cancellationToken);
        var propletId = Guid.NewGuid().ToString();
        var discovered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var watcher = new BrokerConnection(new BrokerOptions { ClientId = "watch-" + tenant, MaxPacketSize = 0 }.WithAddress(broker));
        var results = new System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource<JsonElement>>(StringComparer.Ordinal);
        watcher.Handler = (messages, _) =>
        {
            foreach (var message in messages)
            {
                if (message.Topic.EndsWith(Topics.PropletCreate, StringComparison.Ordinal))
                {
                    discovered.TrySetResult();
                    continue;
                }

                var result = JsonSerializer.Deserialize<JsonElement>(message.Payload.Span);
                if (result.TryGetProperty("task_id", out var id) && results.TryGetValue(id.GetString() ?? "", out var waiter))
                {
                    waiter.TrySetResult(result);
                }
            }

            return ValueTask.CompletedTask;
        };
        await watcher.StartAsync(cancellationToken);
        await watcher.SubscribeAsync(Topics.Of(baseTopic, Topics.Results), MqttQualityOfServiceLevel.AtLeastOnce, cancellationToken);
        await watcher.SubscribeAsync(Topics.Of(baseTopic, Topics.PropletCreate), MqttQualityOfServiceLevel.AtLeastOnce, cancellationToken);
        Process? proplet = null;
        try
        {
            proplet = EndToEndBenchmark.StartProplet(
                EndToEndBenchmark.PropletDll(), broker, tenant, propletId, imageCache is null ? null : new Dictionary<string, string> { ["PROPLET_IMAGE_CACHE_BYTES"] = imageCache });
            await discovered.Task.WaitAsync(TimeSpan.FromSeconds(60), cancellationToken); // subscribed once it announced itself
            var propletPid = proplet.Id;

            // Warm-up outside the clock (JIT on both sides, connections), with a small module, until a run succeeds.
            var warm = await PushAsync(client, registry, "warm", Padded(1000, 0), cancellationToken);
            await RunTaskAsync(watcher, results, baseTopic, warm.Reference, TimeSpan.FromSeconds(60), cancellationToken);
            await RunTaskAsync(watcher, results, baseTopic, warm.BlobUrl, TimeSpan.FromSeconds(60), cancellationToken);

            string[] all = format == "both"
                ? ["direct", "direct-again", "proxy", "proxy-cached", "proxy-json", "proxy-cached-json"]
                : ["direct", "direct-again", "proxy", "proxy-cached"];
            var cases = BenchArgs.Value(args, "--cases") is { } only ? only.Split(',') : all;
            if (cases.FirstOrDefault(c => !all.Contains(c, StringComparer.Ordinal)) is { } unknown)
            {
                throw new BenchUsageException($"--cases: {unknown} is not one of {string.Join(',', all)}");
            }

            var times = all.Where(cases.Contains).ToDictionary(c => c, _ => new List<double>(), StringComparer.Ordinal);
            var cpu = times.Keys.ToDictionary(c => c, _ => new double[3], StringComparer.Ordinal);
            var delivered = times.Keys.ToDictionary(c => c, _ => new List<double>(), StringComparer.Ordinal);
            async Task MeasureAsync(string name, string imageUrl)
            {
                if (!times.TryGetValue(name, out var list))
                {
                    return;
                }

                proxy.BinaryChunks = format != "json" && !name.EndsWith("-json", StringComparison.Ordinal);
                var before = CpuMs(propletPid, mosquitto);
                var started = Stopwatch.GetTimestamp();
                list.Add(await RunTaskAsync(watcher, results, baseTopic, imageUrl, TimeSpan.FromSeconds(60), cancellationToken));
                delivered[name].Add(await SettleAsync(proxy, started, settle, cancellationToken));
                var after = CpuMs(propletPid, mosquitto);
                for (var i = 0; i < 3; i++)
                {
                    cpu[name][i] += after[i] - before[i];
                }
            }

            for (var round = 1; round <= warmups; round++)
            {
                var direct = await PushAsync(client, registry, "warm-direct", Padded(size, -(2 * round) - 1), cancellationToken);
                var viaProxy = await PushAsync(client, registry, "warm-proxy", Padded(size, -(2 * round) - 2), cancellationToken);
                List<(string Url, bool Binary)> runs = [(direct.BlobUrl, true), (direct.BlobUrl, true), (viaProxy.Reference, format != "json"), (viaProxy.Reference, format != "json")];
                if (format == "both")
                {
                    var viaJson = await PushAsync(client, registry, "warm-json", Padded(size, -(2 * round) - 2 - (1 << 20)), cancellationToken);
                    runs.AddRange([(viaJson.Reference, false), (viaJson.Reference, false)]);
                }

                foreach (var (url, binary) in runs)
                {
                    proxy.BinaryChunks = binary;
                    await RunTaskAsync(watcher, results, baseTopic, url, TimeSpan.FromSeconds(60), cancellationToken);
                    await SettleAsync(proxy, Stopwatch.GetTimestamp(), settle, cancellationToken);
                }
            }

            var hitsBefore = proxy.Metrics.CacheHits;
            var fetchesBefore = proxy.Metrics.Fetches;
            var binaryBefore = proxy.Metrics.BinaryRequests;
            var chunksBefore = proxy.Metrics.Chunks;
            for (var round = 1; round <= rounds; round++)
            {
                var direct = await PushAsync(client, registry, "direct", Padded(size, (2 * round) + 1), cancellationToken);
                var viaProxy = await PushAsync(client, registry, "proxy", Padded(size, (2 * round) + 2), cancellationToken);
                await MeasureAsync("direct", direct.BlobUrl);
                await MeasureAsync("direct-again", direct.BlobUrl);
                await MeasureAsync("proxy", viaProxy.Reference);
                await MeasureAsync("proxy-cached", viaProxy.Reference);
                if (format == "both")
                {
                    var viaJson = await PushAsync(client, registry, "proxy-json", Padded(size, (2 * round) + 2 + (1 << 20)), cancellationToken);
                    await MeasureAsync("proxy-json", viaJson.Reference);
                    await MeasureAsync("proxy-cached-json", viaJson.Reference);
                }
            }

            double Median(string key) => times[key].Order().ElementAt(times[key].Count / 2);
            double DeliveredMedian(string key) => delivered[key].Order().ElementAt(delivered[key].Count / 2);
            double MBps(double ms) => size / 1048576.0 / (ms / 1000);
            foreach (var key in times.Keys)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"proxy case={key} size={size} rounds={rounds} first_run_ms_p50={Median(key):F1} delivered_ms_p50={DeliveredMedian(key):F1} MBps={MBps(Median(key)):F1} cpu_ms_per_run(proplet,bench,broker)={cpu[key][0] / rounds:F0},{cpu[key][1] / rounds:F0},{cpu[key][2] / rounds:F0} all_ms=[{string.Join(' ', times[key].Select(t => t.ToString("F0", CultureInfo.InvariantCulture)))}]"));
            }

            string Ratio(string reference, string measured) =>
                times.ContainsKey(reference) && times.ContainsKey(measured) ? (Median(reference) / Median(measured)).ToString("F2", CultureInfo.InvariantCulture) : "-";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"proxy case=ratio proxy_vs_direct={Ratio("direct", "proxy")} (target >= 0.5) cached_vs_direct_again={Ratio("direct-again", "proxy-cached")} (target >= 1.0) json_proxy_vs_direct={Ratio("direct", "proxy-json")} json_cached_vs_direct_again={Ratio("direct-again", "proxy-cached-json")} binary_requests={proxy.Metrics.BinaryRequests - binaryBefore} chunks_published={proxy.Metrics.Chunks - chunksBefore} cache_hits={proxy.Metrics.CacheHits - hitsBefore} fetches={proxy.Metrics.Fetches - fetchesBefore} load={File.ReadAllText("/proc/loadavg").Trim()}"));
            return 0;
        }
        finally
        {
            ChildProcess.Stop(proplet);
        }
    }

    /// <summary>Waits until the proxy has no delivery in flight (its last chunk published and acknowledged), then
    /// <paramref name="settle"/>; returns the milliseconds from <paramref name="started"/> until the deliveries ended.</summary>
    private static async Task<double> SettleAsync(ProxyNode proxy, long started, TimeSpan settle, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (proxy.InFlight > 0 && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(1, cancellationToken);
        }

        var delivered = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        await Task.Delay(settle, cancellationToken);
        return delivered;
    }

    /// <summary>CPU milliseconds used so far by the proplet, this process (the proxy and the watcher) and the broker
    /// (when its pid is known), from /proc (user + system ticks).</summary>
    private static double[] CpuMs(int proplet, int broker) => [ProcCpu.Ms(proplet), ProcCpu.Ms(Environment.ProcessId), broker > 0 ? ProcCpu.Ms(broker) : 0];

    /// <summary>The process listening on TCP <paramref name="port"/> (the broker), from /proc/net/tcp{,6} and the processes'
    /// open sockets; 0 when not found (another user's process, or not Linux).</summary>
    private static int ListeningPid(int port)
    {
        try
        {
            var inodes = new HashSet<string>(StringComparer.Ordinal);
            foreach (var table in (string[])["/proc/net/tcp", "/proc/net/tcp6"])
            {
                foreach (var line in File.Exists(table) ? File.ReadLines(table).Skip(1) : [])
                {
                    // sl local_address rem_address st ... inode: the local port is hex after the colon; 0A = LISTEN.
                    var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (fields.Length > 9 && fields[3] == "0A" && int.Parse(fields[1][(fields[1].LastIndexOf(':') + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture) == port)
                    {
                        inodes.Add($"socket:[{fields[9]}]");
                    }
                }
            }

            foreach (var process in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(process), out var pid))
                {
                    continue;
                }

                try
                {
                    if (Directory.EnumerateFileSystemEntries(Path.Combine(process, "fd")).Any(fd => new FileInfo(fd).LinkTarget is { } target && inodes.Contains(target)))
                    {
                        return pid;
                    }
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // gone meanwhile, or not ours to read
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // no /proc
        }

        return 0;
    }

    /// <summary>The addition module plus a custom section "pad" bringing it to <paramref name="size"/> bytes; the
    /// <paramref name="salt"/> makes every round's artefact (and digest) new.</summary>
    private static byte[] Padded(int size, int salt)
    {
        var module = Convert.FromBase64String(AdditionBase64);
        var name = "pad"u8.ToArray();
        var padding = Math.Max(0, size - module.Length - name.Length - 1 - 6);
        var body = new byte[1 + name.Length + padding];
        body[0] = (byte)name.Length;
        name.CopyTo(body, 1);
        BitConverter.TryWriteBytes(body.AsSpan(1 + name.Length), salt);
        using var output = new MemoryStream();
        output.Write(module);
        output.WriteByte(0); // custom section
        var length = (uint)body.Length;
        do
        {
            var b = (byte)(length & 0x7F);
            length >>= 7;
            output.WriteByte(length != 0 ? (byte)(b | 0x80) : b);
        }
        while (length != 0);
        output.Write(body);
        return output.ToArray();
    }

    /// <summary>The `add` module of the original's docs (main(a, b) = a + b), as tests/Edge.Tests/Modules.cs has it.</summary>
    private const string AdditionBase64 = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL";

    private static async Task<(string Reference, string BlobUrl)> PushAsync(RegistryClient client, string registry, string name, byte[] module, CancellationToken cancellationToken)
    {
        var reference = ImageReference.Parse($"{registry}/bench/{name}:{Guid.NewGuid():N}");
        await client.PushWasmAsync(reference, module, cancellationToken);
        var digest = "sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(module));
        return (reference.ToString(), $"http://{registry}/v2/{reference.Repository}/blobs/{digest}");
    }

    private static async Task<double> RunTaskAsync(
        BrokerConnection watcher, System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource<JsonElement>> results, string baseTopic, string imageUrl, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var id = Guid.NewGuid().ToString();
        var done = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        results[id] = done;
        var start = JsonSerializer.SerializeToUtf8Bytes(new StartMessage { Id = id, Name = "main", ImageUrl = imageUrl, Inputs = ["20", "22"] });
        var clock = Stopwatch.StartNew();
        await watcher.PublishAsync(Topics.Of(baseTopic, Topics.Start), start, MqttQualityOfServiceLevel.AtLeastOnce, cancellationToken);
        var result = await done.Task.WaitAsync(timeout, cancellationToken);
        var elapsed = clock.Elapsed.TotalMilliseconds;
        results.TryRemove(id, out _);
        if (result.GetProperty("results").GetString() != "42")
        {
            throw new InvalidOperationException($"task with image {imageUrl} failed: {result.GetRawText()}");
        }

        return elapsed;
    }
}
