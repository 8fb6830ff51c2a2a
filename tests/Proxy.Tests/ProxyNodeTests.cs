using System.Buffers;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Contracts.Mqtt;
using Propeller.Edge;
using Propeller.Edge.Configuration;
using Propeller.Proxy.Configuration;
using Propeller.Proxy.Oci;
using Propeller.Proxy.Serving;

namespace Propeller.Proxy.Tests;

/// <summary>The proxy against the real mosquitto and registry, watched by a client on its channel; and with a real
/// proplet (in-process) that runs what it delivers.</summary>
public sealed class ProxyNodeTests : IAsyncLifetime
{
    private readonly string _tenant = "px-" + Guid.NewGuid().ToString("N")[..10];
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly List<IAsyncDisposable> _owned = [];
    private BrokerConnection _observer = null!;
    private Inbox _observed = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private string BaseTopic => Topics.Base(_tenant, "c1");

    public async ValueTask InitializeAsync()
    {
        _observer = new BrokerConnection(new BrokerOptions { ClientId = "obs-" + _tenant }.WithAddress(TestRegistry.Mqtt));
        _observed = Inbox.Of(_observer);
        await _observer.StartAsync(Ct);
        await _observer.SubscribeAsync(BaseTopic + "/registry/#", MqttQualityOfServiceLevel.ExactlyOnce, Ct);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var owned in _owned)
        {
            await owned.DisposeAsync();
        }

        await _observer.DisposeAsync();
        _http.Dispose();
    }

    [Fact]
    public async Task GivenAnImage_WhenRequestedTwice_ThenChunksWithTheSha256ArriveAndTheSecondComesFromTheCache()
    {
        var node = await StartProxyAsync(chunkSize: 10);
        var app = await PushAsync("twice", Modules.Addition);

        await RequestAsync(app);
        var first = await ReceiveImageAsync(app);
        await RequestAsync(app);
        var second = await ReceiveImageAsync(app);

        first.Bytes.ShouldBe(Modules.Addition);
        second.Bytes.ShouldBe(Modules.Addition);
        first.Sha256.ShouldBe(Convert.ToHexStringLower(SHA256.HashData(Modules.Addition)));
        first.Total.ShouldBe((Modules.Addition.Length + 9) / 10);
        node.Metrics.Fetches.ShouldBe(1);
        node.Metrics.CacheHits.ShouldBe(1);
        node.Metrics.FetchBytes.ShouldBe(Modules.Addition.Length);
    }

    [Fact]
    public async Task GivenManyRequestsForOneImageAtOnce_WhenServed_ThenTheRegistryIsAskedOnce()
    {
        var node = await StartProxyAsync(chunkSize: 8);
        var app = await PushAsync("flight", Modules.Addition);

        for (var i = 0; i < 5; i++)
        {
            await RequestAsync(app);
        }

        (await ReceiveImageAsync(app)).Bytes.ShouldBe(Modules.Addition);
        for (var i = 0; i < 200 && node.Metrics.Requests < 5; i++)
        {
            await Task.Delay(50, Ct);
        }

        node.Metrics.Requests.ShouldBe(5);
        node.Metrics.Fetches.ShouldBe(1); // the others shared the flight or, once it landed, the cache
    }

    [Fact]
    public async Task GivenARequestListingChunks_WhenServed_ThenOnlyThoseArePublished()
    {
        await StartProxyAsync(chunkSize: 10);
        var app = await PushAsync("some", Modules.Addition);

        await RequestAsync(app, [2]);
        var only = await NextChunkAsync();
        await RequestAsync(app, [0]);
        var next = await NextChunkAsync();

        only.GetProperty("chunk_idx").GetInt32().ShouldBe(2);
        next.GetProperty("chunk_idx").GetInt32().ShouldBe(0); // chunk 0 was not in the first answer
        Convert.FromBase64String(only.GetProperty("data").GetString()!).ShouldBe(Modules.Addition[20..30]);
    }

    [Fact]
    public async Task GivenARequestWhoseHaveNamesTheImagesSha256_WhenServed_ThenOnlyItsLastChunkIsPublished()
    {
        var node = await StartProxyAsync(chunkSize: 10);
        var app = await PushAsync("held", Modules.Addition);
        var sha = Convert.ToHexStringLower(SHA256.HashData(Modules.Addition));
        var total = (Modules.Addition.Length + 9) / 10;

        await RequestAsync(app, have: ["0" + sha[1..], sha.ToUpperInvariant()]); // pulled, then announced by one chunk
        var announced = await NextChunkAsync();
        await RequestAsync(app, have: [new string('0', 64)]); // another image held: every chunk, from the cache
        var full = await ReceiveImageAsync(app);

        announced.GetProperty("chunk_idx").GetInt32().ShouldBe(total - 1);
        announced.GetProperty("sha256").GetString().ShouldBe(sha);
        announced.GetProperty("size").GetInt64().ShouldBe(Modules.Addition.Length);
        full.Bytes.ShouldBe(Modules.Addition);
        (await PublishedChunksAsync(node, 1 + total)).ShouldBe(1 + total);
        node.Metrics.Fetches.ShouldBe(1);
    }

    [Fact]
    public async Task GivenAPropletThatRanAnImage_WhenATaskNamesItAgain_ThenOneChunkAnnouncesItAndThePropletRunsItsVerifiedCopy()
    {
        var node = await StartProxyAsync(chunkSize: 16);
        var app = await PushAsync("again", Modules.Addition);
        await StartPropletAsync();
        var sha = Convert.ToHexStringLower(SHA256.HashData(Modules.Addition));

        var first = await RunAdditionAsync("img-first", app);
        var again = await RunAdditionAsync("img-again", app);

        first.ShouldHaveSingleItem().Have.ShouldBeNull(); // nothing held yet: every chunk
        again.ShouldHaveSingleItem().Have.ShouldBe([sha]);
        (await PublishedChunksAsync(node, ((Modules.Addition.Length + 15) / 16) + 1)).ShouldBe(((Modules.Addition.Length + 15) / 16) + 1);
    }

    [Fact]
    public async Task GivenAnImageOfManyChunks_WhenPulledAndThenServedFromTheCache_ThenEveryChunkArrivesBothTimes()
    {
        // Pulled: chunks go out while the blob still arrives (several publishes in flight); cached: all at once.
        var node = await StartProxyAsync(chunkSize: 1000);
        var module = RandomNumberGenerator.GetBytes(300_000);
        var app = await PushAsync("many", module);

        await RequestAsync(app);
        var pulled = await ReceiveImageAsync(app);
        await RequestAsync(app);
        var cached = await ReceiveImageAsync(app);

        pulled.Total.ShouldBe(300);
        pulled.Bytes.ShouldBe(module);
        cached.Bytes.ShouldBe(module);
        pulled.Sha256.ShouldBe(Convert.ToHexStringLower(SHA256.HashData(module)));
        node.Metrics.Fetches.ShouldBe(1);
        node.Metrics.CacheHits.ShouldBe(1);
        (await PublishedChunksAsync(node, 600)).ShouldBe(600);
        node.Cache.Bytes.ShouldBe(300_000 + (300 * 1336)); // the bytes and their encoded chunks (1000 bytes: 1336 in base64)
    }

    [Fact]
    public async Task GivenARequestListingOnlyChunksTheImageDoesNotHave_WhenServed_ThenEveryChunkIsPublished()
    {
        // A proplet whose partial assembly came from another artefact under the name (a tag that moved to a smaller
        // one) asks for chunks past the end; before, it got nothing and asked again until it timed out.
        var logs = new LogLines();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(logs));
        await StartProxyAsync(chunkSize: 10, loggers: loggers);
        var app = await PushAsync("beyond", Modules.Addition);
        var total = (Modules.Addition.Length + 9) / 10;

        await RequestAsync(app, [total, total + 30]);
        for (var i = 0; i < 200 && !logs.Lines.Any(l => l.Contains($"Image {app}: ", StringComparison.Ordinal) && l.Contains("; publishing ", StringComparison.Ordinal)); i++)
        {
            await Task.Delay(25, Ct);
        }

        logs.Lines.ShouldContain(l => l.Contains($"Image {app}: ", StringComparison.Ordinal) && l.EndsWith($"; publishing {total} of {total} chunks", StringComparison.Ordinal), string.Join('\n', logs.Lines));
        (await ReceiveImageAsync(app)).Bytes.ShouldBe(Modules.Addition);
    }

    [Fact]
    public async Task GivenADeliveryUnderWay_WhenARequestListsChunksOfTheSameImage_ThenItIsServedOnItsOwn()
    {
        // A proplet re-requesting what it missed must not join a delivery that may already have passed those chunks.
        var node = await StartProxyAsync(chunkSize: 10);
        var app = await PushAsync("rejoin", Modules.Addition);
        var total = (Modules.Addition.Length + 9) / 10;

        await RequestAsync(app);
        await RequestAsync(app, [1]);
        var chunks = new List<int>();
        for (var i = 0; i < total + 1; i++)
        {
            chunks.Add((await NextChunkAsync()).GetProperty("chunk_idx").GetInt32());
        }

        chunks.Count(c => c == 1).ShouldBe(2);
        chunks.Distinct().Count().ShouldBe(total);
        node.Metrics.Deduplicated.ShouldBe(0);
    }

    [Fact]
    public async Task GivenADeliveryAlreadyPublishing_WhenTheSameRequestComes_ThenTheDeliveryRunsOnceMoreForIt()
    {
        // An original proplet that asks while a delivery is under way cannot ask again for the chunks already out: the
        // flight takes the request and, once it ends, delivers everything once more (from the cache).
        var node = await StartProxyAsync(chunkSize: 100);
        var module = Padded(Modules.Addition, 150 * 1024); // ~1,500 chunks: the late requests come while they go out
        var app = await PushAsync("late", module);
        var total = (module.Length + 99) / 100;

        await RequestAsync(app);
        var seen = new Dictionary<int, int> { [(await NextChunkAsync()).GetProperty("chunk_idx").GetInt32()] = 1 };
        await RequestAsync(app);
        await RequestAsync(app);
        while (seen.Count < total || seen.Values.Any(n => n < 2))
        {
            var index = (await NextChunkAsync()).GetProperty("chunk_idx").GetInt32();
            seen[index] = seen.GetValueOrDefault(index) + 1;
        }

        for (var i = 0; i < 200 && node.InFlight > 0; i++)
        {
            await Task.Delay(20, Ct);
        }

        node.Metrics.Deduplicated.ShouldBe(2);
        node.Metrics.Fetches.ShouldBe(1);
        (await PublishedChunksAsync(node, 2 * total)).ShouldBe(2 * total, "one delivery more for both late requests together");
    }

    [Fact]
    public async Task GivenAPullWhoseBlobIsSlowToCome_WhenTheSameRequestComesMeanwhile_ThenItSharesTheDeliveryWithoutAnotherRun()
    {
        // Our proplet asks again in full when no chunk came for PROPLET_CHUNK_STALL. A request that joins before the first
        // chunk went out gets every chunk of the delivery; it used to make the delivery run once more (from the cache),
        // because a pull's publication counted as begun from before its blob was requested.
        var module = Modules.Addition;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stub = SlowBlob(module, release);
        var node = await StartProxyAsync(chunkSize: 16, registry: stub);
        var app = $"{StubRegistry.Host}/test/slowblob:v1";

        await RequestAsync(app, formats: ["binary"]);
        await WhileAsync(() => stub.Count(StubRegistry.DigestOf(module)) == 0);

        await RequestAsync(app, formats: ["binary"]);
        await WhileAsync(() => node.Metrics.Deduplicated == 0);

        release.SetResult();
        var image = await ReceiveBinaryImageAsync(app);
        await WhileAsync(() => node.InFlight > 0);

        image.Bytes.ShouldBe(module);
        node.Metrics.Deduplicated.ShouldBe(1);
        node.Metrics.CacheHits.ShouldBe(0, "no second delivery");
        (await PublishedChunksAsync(node, (module.Length + 15) / 16)).ShouldBe((module.Length + 15) / 16);
    }

    /// <summary>Waits while <paramref name="waiting"/> holds, at most 5 s (then goes on: the assertions after it tell).</summary>
    private static async Task WhileAsync(Func<bool> waiting)
    {
        for (var i = 0; i < 200 && waiting(); i++)
        {
            await Task.Delay(25, Ct);
        }
    }

    /// <summary>A stub registry whose blob of <paramref name="module"/> comes only once <paramref name="release"/> is set.</summary>
    private static StubRegistry SlowBlob(byte[] module, TaskCompletionSource release) => new(async (request, ct) =>
    {
        if (request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal))
        {
            await release.Task.WaitAsync(ct);
            return StubRegistry.Blob(module);
        }

        return StubRegistry.Manifest(module);
    });

    /// <summary>
    /// Proplets that ran different images (each request names other held images) and one that ran none, asking for one
    /// image at once: one flight, one pull, every chunk once. Before, each set of held images was a flight of its own:
    /// a pull and a broadcast of every chunk per proplet.
    /// </summary>
    [Fact]
    public async Task GivenRequestsNamingDifferentHeldImages_WhenTheyAskForOneImageAtOnce_ThenTheyShareOneDelivery()
    {
        var module = Modules.Addition;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stub = SlowBlob(module, release);
        var node = await StartProxyAsync(chunkSize: 16, registry: stub);
        var app = $"{StubRegistry.Host}/test/held-elsewhere:v1";

        await RequestAsync(app, have: [new string('1', 64)]);
        await WhileAsync(() => stub.Count(StubRegistry.DigestOf(module)) == 0);

        await RequestAsync(app, have: [new string('2', 64), new string('3', 64)]);
        await RequestAsync(app);
        await WhileAsync(() => node.Metrics.Deduplicated < 2);

        release.SetResult();
        var image = await ReceiveImageAsync(app);
        await WhileAsync(() => node.InFlight > 0);

        image.Bytes.ShouldBe(module);
        node.Metrics.Deduplicated.ShouldBe(2);
        stub.Count(StubRegistry.DigestOf(module)).ShouldBe(1);
        (await PublishedChunksAsync(node, (module.Length + 15) / 16 + 1)).ShouldBe((module.Length + 15) / 16, "every chunk once");
    }

    /// <summary>The proxy busy (its flights at the limit) while a delivery of the image is under way: a request it cannot
    /// take is dropped (logged), not answered with registry/failure, which names the image alone and so failed every
    /// proplet waiting for that delivery too. With nothing of the image under way, busy is still a failure.</summary>
    [Fact]
    public async Task GivenTheProxyBusyWithADeliveryOfTheImage_WhenAnotherRequestForItComes_ThenNoFailureEndsThatDelivery()
    {
        var module = Modules.Addition;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stub = SlowBlob(module, release);
        var node = await StartProxyAsync(chunkSize: 16, registry: stub);
        node.MaxPending = 1;
        var app = $"{StubRegistry.Host}/test/busy:v1";

        await RequestAsync(app);
        await WhileAsync(() => stub.Count(StubRegistry.DigestOf(module)) == 0);

        await RequestAsync(app, formats: ["binary"]); // another flight (the binary format): refused, busy
        await RequestAsync($"{StubRegistry.Host}/test/other:v1");
        var failure = await NextOnAsync(Topics.RegistryFailure);
        release.SetResult();

        failure.GetProperty("app_name").GetString().ShouldBe($"{StubRegistry.Host}/test/other:v1");
        failure.GetProperty("error").GetString()!.ShouldStartWith("the proxy is busy");
        node.Metrics.Failures.ShouldBe(1, "a busy refusal answered on registry/failure counts in proxy_failures_total");
        (await ReceiveImageAsync(app)).Bytes.ShouldBe(module); // no failure for it came first (that would end the wait)
    }

    /// <summary>
    /// A JSON flight of an image failing while a binary flight of it is under way: its failure waits for that flight and,
    /// as it delivered, is not published (registry/failure names the image alone; a proplet fails every assembly of it).
    /// Before, the failure went out at once and ended the binary delivery's assembly on every proplet. The JSON flight's
    /// own proplets, which do not read binary chunks, get the image by a second run of their flight (from the cache the
    /// binary one filled); before, they got neither chunks nor a failure until their fetch timed out.
    /// </summary>
    [Fact]
    public async Task GivenAFlightThatFailsWhileAnotherFlightOfTheImageDelivers_WhenItEnds_ThenNoFailureIsPublishedAndItsRequestsAreServed()
    {
        var (stub, release) = SecondManifestMissing(Modules.Addition);
        using var registry = stub;
        var logs = new LogLines();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(logs));
        var node = await StartProxyAsync(chunkSize: 16, registry: stub, loggers: loggers);
        var app = $"{StubRegistry.Host}/test/two-formats:v1";

        await RequestAsync(app, formats: ["binary"]); // pulled; its blob waits
        await WhileAsync(() => stub.Count(StubRegistry.DigestOf(Modules.Addition)) == 0);
        await RequestAsync(app); // JSON: its manifest is not found
        await WhileAsync(() => node.Metrics.Failures == 0);
        release.SetResult();
        var image = await ReceiveBinaryImageAsync(app); // a failure on the way would end it
        var json = await ReceiveImageAsync(app);
        await WhileAsync(() => node.InFlight > 0);

        image.Bytes.ShouldBe(Modules.Addition);
        json.Bytes.ShouldBe(Modules.Addition);
        node.Metrics.Failures.ShouldBe(1);
        stub.Count(StubRegistry.DigestOf(Modules.Addition)).ShouldBe(1, "the second run is served from the cache");
        logs.Lines.ShouldContain(l => l.StartsWith($"Information: Image {app}: another delivery of it delivered; this one's failure is not published", StringComparison.Ordinal));
    }

    /// <summary>
    /// A request for a flight whose delivery has ended (failed before its first chunk) but which is still in the table (here:
    /// its failure held for another flight of the image, as above): it starts a flight of its own. Absorbed, as before, it
    /// got no delivery and, the failure withheld, no answer at all.
    /// </summary>
    [Fact]
    public async Task GivenAFlightThatHasEndedButNotLeftTheTable_WhenTheSameRequestComes_ThenItGetsAFlightOfItsOwn()
    {
        var (stub, release) = SecondManifestMissing(Modules.Addition);
        using var registry = stub;
        var node = await StartProxyAsync(chunkSize: 16, registry: stub);
        var app = $"{StubRegistry.Host}/test/ended-flight:v1";

        await RequestAsync(app, formats: ["binary"]);
        await WhileAsync(() => stub.Count(StubRegistry.DigestOf(Modules.Addition)) == 0);
        await RequestAsync(app); // fails (second manifest GET), its failure held for the binary flight
        await WhileAsync(() => node.Metrics.Failures == 0);
        await RequestAsync(app); // the same JSON flight
        await WhileAsync(() => node.Metrics.Deduplicated == 0 && stub.Count("/manifests/v1") < 3);
        release.SetResult();

        await WhileAsync(() => node.InFlight > 0);

        node.Metrics.Deduplicated.ShouldBe(0);
        stub.Count("/manifests/v1").ShouldBe(3);
        var total = (Modules.Addition.Length + 15) / 16;
        (await PublishedChunksAsync(node, 2 * total)).ShouldBe(2 * total, "the binary delivery and the new JSON flight's");
    }

    /// <summary>A stub registry serving <paramref name="module"/> whose blob comes once the second value is set and whose
    /// second manifest GET is answered 404 (the others are found).</summary>
    private static (StubRegistry Stub, TaskCompletionSource Release) SecondManifestMissing(byte[] module)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var manifests = 0;
        var stub = new StubRegistry(async (request, ct) =>
        {
            if (request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal))
            {
                await release.Task.WaitAsync(ct);
                return StubRegistry.Blob(module);
            }

            return Interlocked.Increment(ref manifests) == 2 ? new HttpResponseMessage(HttpStatusCode.NotFound) : StubRegistry.Manifest(module);
        });
        return (stub, release);
    }

    /// <summary>A flight that decided to send one chunk (its request holds the image) and a request that does not hold it
    /// joining after: that request gets every chunk, once the flight ended (from the cache), not the one chunk.</summary>
    [Fact]
    public async Task GivenAFlightSendingOneChunkToAPropletHoldingTheImage_WhenAnotherPropletAsks_ThenItGetsEveryChunk()
    {
        var module = Modules.Addition;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stub = SlowBlob(module, release);
        var node = await StartProxyAsync(chunkSize: 16, registry: stub);
        var app = $"{StubRegistry.Host}/test/held-here:v1";
        var total = (module.Length + 15) / 16;

        await RequestAsync(app, have: [Convert.ToHexStringLower(SHA256.HashData(module))]);
        await WhileAsync(() => stub.Count(StubRegistry.DigestOf(module)) == 0);

        await RequestAsync(app);
        await WhileAsync(() => node.Metrics.Deduplicated == 0);

        release.SetResult();
        (await NextChunkAsync()).GetProperty("chunk_idx").GetInt32().ShouldBe(total - 1);
        (await ReceiveImageAsync(app)).Bytes.ShouldBe(module);
        stub.Count(StubRegistry.DigestOf(module)).ShouldBe(1);
        (await PublishedChunksAsync(node, 1 + total)).ShouldBe(1 + total);
    }

    [Fact]
    public async Task GivenAPullWhoseBlobTrickles_WhenThePropletAsksAgainForTheMissingChunks_ThenTheyComeFromThatPullWithoutAnotherBlobGet()
    {
        // Our proplet asks for the chunks it misses when none came for PROPLET_CHUNK_STALL, with a new list each time.
        // Such a request used to be a flight of its own: for an image not cached yet it resolved the manifest and pulled
        // the whole blob again beside the running pull. The re-requests that wait for the pull are served together, once
        // (they were served one by one, most chunks several times).
        var module = Modules.Addition;
        const int chunkSize = 8;
        var total = (module.Length + chunkSize - 1) / chunkSize;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stub = new StubRegistry((request, ct) => Task.FromResult(request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal)
            ? new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new TricklingStream(module, 2 * chunkSize, release.Task)) }
            : StubRegistry.Manifest(module)));
        var node = await StartProxyAsync(chunkSize: chunkSize, registry: stub);
        var app = $"{StubRegistry.Host}/test/trickle:v1";
        total.ShouldBeGreaterThan(4);

        await RequestAsync(app, formats: ["binary"]);
        for (var i = 0; i < 200 && node.Metrics.Chunks < 2; i++)
        {
            await Task.Delay(25, Ct);
        }

        node.Metrics.Chunks.ShouldBe(2, "the chunks the first bytes complete went out; the rest of the blob is on its way");
        int[] first = [.. Enumerable.Range(2, total - 2)], second = [.. Enumerable.Range(3, total - 3)];
        await RequestAsync(app, chunks: first, formats: ["binary"]);
        await RequestAsync(app, chunks: second, formats: ["binary"]);
        await Task.Delay(500, Ct); // a second pull would have asked for the blob by now
        stub.Count(StubRegistry.DigestOf(module)).ShouldBe(1);

        release.SetResult();
        var image = await ReceiveBinaryImageAsync(app);
        var again = new List<int>();
        while (again.Count < first.Length)
        {
            var payload = (await NextMessageOnAsync(Topics.RegistryBinaryChunks)).Payload.Span;
            again.Add(JsonSerializer.Deserialize<BinaryChunkHeader>(payload[..payload.IndexOf(BinaryChunkHeader.Separator)])!.ChunkIndex);
        }

        image.Bytes.ShouldBe(module);
        again.Order().ShouldBe(first.Union(second).Order(), "the re-requests waiting together: one delivery of the chunks they list");
        (await PublishedChunksAsync(node, total + first.Length + 1)).ShouldBe(total + first.Length);
        stub.Count(StubRegistry.DigestOf(module)).ShouldBe(1, "one blob GET");
        node.Metrics.Fetches.ShouldBe(1);
    }

    /// <summary>A blob body that gives at most <paramref name="slice"/> bytes per read, and throws once its reader's
    /// token is cancelled (as a socket's read does).</summary>
    private sealed class SlicedStream(byte[] data, int slice) : ForwardBody(data)
    {
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Yield();
            cancellationToken.ThrowIfCancellationRequested();
            return Take(buffer, slice);
        }
    }

    /// <summary>A blob body whose first <paramref name="early"/> bytes come at once and the rest once
    /// <paramref name="rest"/> completes.</summary>
    private sealed class TricklingStream(byte[] data, int early, Task rest) : ForwardBody(data)
    {
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Position >= early)
            {
                await rest.WaitAsync(cancellationToken);
            }

            return Take(buffer, Position < early ? early - (int)Position : int.MaxValue);
        }
    }

    /// <summary>A blob body read once from start to end, asynchronously, with no length (a chunked answer).</summary>
    private abstract class ForwardBody(byte[] data) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public abstract override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        /// <summary>Copies the next bytes into <paramref name="buffer"/>, at most <paramref name="most"/>; 0 at the end.</summary>
        protected int Take(Memory<byte> buffer, int most)
        {
            var count = Math.Min(Math.Min(buffer.Length, most), data.Length - _position);
            data.AsMemory(_position, count).CopyTo(buffer);
            _position += count;
            return count;
        }
    }

    [Fact]
    public async Task GivenNoCache_WhenARequestListsChunks_ThenOnlyThoseArePublishedFromThePull()
    {
        var node = await StartProxyAsync(chunkSize: 10, cacheBytes: 0);
        var app = await PushAsync("uncached", Modules.Addition);

        await RequestAsync(app, [3, 1]);
        var first = await NextChunkAsync();
        var second = await NextChunkAsync();
        await RequestAsync(app, [0]);
        var third = await NextChunkAsync();

        new[] { first, second }.Select(c => c.GetProperty("chunk_idx").GetInt32()).Order().ShouldBe([1, 3]); // in flight together: any order
        third.GetProperty("chunk_idx").GetInt32().ShouldBe(0);
        var three = first.GetProperty("chunk_idx").GetInt32() == 3 ? first : second;
        Convert.FromBase64String(three.GetProperty("data").GetString()!).ShouldBe(Modules.Addition[30..40]);
        node.Metrics.Fetches.ShouldBe(2);
    }

    [Fact]
    public async Task GivenABlobCorruptedInTheRegistrysStorage_WhenPulled_ThenTheLastChunkIsWithheldAndTheFailureIsPublished()
    {
        await StartProxyAsync(chunkSize: 1000);
        var module = RandomNumberGenerator.GetBytes(5000);
        var app = await PushAsync("rot", module);
        var hex = Convert.ToHexStringLower(SHA256.HashData(module));
        var file = Path.Combine(TestRegistry.StorageDirectory, "docker", "registry", "v2", "blobs", "sha256", hex[..2], hex, "data");
        var stored = await File.ReadAllBytesAsync(file, Ct);
        stored[10] ^= 0xFF; // in the first chunk, which goes out before the digest can be checked
        await File.WriteAllBytesAsync(file, stored, Ct);

        await RequestAsync(app);
        var chunks = new List<int>();
        ReceivedMessage message;
        while ((message = await _observed.ReceiveAsync(Ct)).Topic != Topics.Of(BaseTopic, Topics.RegistryFailure))
        {
            if (message.Topic == Topics.Of(BaseTopic, Topics.RegistryChunks))
            {
                chunks.Add(JsonSerializer.Deserialize<JsonElement>(message.Payload.Span).GetProperty("chunk_idx").GetInt32());
            }
        }

        chunks.ShouldNotContain(4); // without the last chunk no proplet, old or new, assembles the rotten bytes
        JsonSerializer.Deserialize<RegistryFailureMessage>(message.Payload.Span)!.Error.ShouldNotBeNull().ShouldContain("failed verification");
    }

    [Fact]
    public void GivenEncodedChunks_WhenAPayloadIsMade_ThenItHasTheBytesOfChunkJson()
    {
        foreach (var (size, chunkSize) in new[] { (0, 3), (1, 1), (5, 3), (1000, 7), (1000, 1000), (4096, 1024) })
        {
            var artifact = new Artifact("sha256:00", RandomNumberGenerator.GetBytes(size), "abc");
            var bodies = artifact.Bodies(chunkSize);
            foreach (var app in new[] { "r/a:v1", """h\u "quoted" é+<>""" })
            {
                for (var i = 0; i < bodies.Total; i++)
                {
                    bodies.Payload(app, i).ToArray().ShouldBe(ProxyNode.ChunkJson(app, artifact, i, bodies.Total, chunkSize), $"size {size}, chunk {i} of {app}");
                }
            }
        }
    }

    [Theory]
    [InlineData("unknown-tag", "tag v404 not found in")]
    [InlineData("bad-reference", "is not an image reference host/repository[:tag|@digest]")]
    [InlineData("too-large", "over the proxy's limit of 1000 bytes (PROXY_MAX_ARTIFACT_BYTES)")]
    [InlineData("unreachable", "is unreachable")]
    public async Task GivenAnImageThatCannotBeDelivered_WhenRequested_ThenTheFailureIsPublished(string kind, string reason)
    {
        await StartProxyAsync(chunkSize: 512, maxArtifactBytes: 1000);
        var app = kind switch
        {
            "unknown-tag" => (await PushAsync("known", Modules.Addition))[..^3] + ":v404",
            "bad-reference" => "Not A Reference!",
            "too-large" => await PushAsync("large", new byte[5000]),
            _ => "127.0.0.1:1/test/none:v1",
        };

        await RequestAsync(app);
        ReceivedMessage message;
        do
        {
            message = await _observed.ReceiveAsync(Ct); // skipping our own request
        }
        while (message.Topic == Topics.Of(BaseTopic, Topics.RegistryRequest));

        message.Topic.ShouldBe(Topics.Of(BaseTopic, Topics.RegistryFailure));
        var failure = JsonSerializer.Deserialize<RegistryFailureMessage>(message.Payload.Span)!;
        failure.AppName.ShouldBe(app);
        failure.Error.ShouldNotBeNull().ShouldContain(reason);
    }

    [Fact]
    public async Task GivenAManifestWhoseLayerHasNoDigest_WhenRequestedThenFixed_ThenTheFailureSaysSoAndTheNextRequestIsServed()
    {
        // Before: the missing digest was remembered for the tag, and every later binary request for it failed with an
        // ArgumentNullException from the cache until the proxy restarted.
        var module = Modules.Addition;
        var fixedManifest = 0;
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal) ? StubRegistry.Blob(module)
            : Volatile.Read(ref fixedManifest) == 0 ? StubRegistry.Manifest(module, digest: null)
            : StubRegistry.Manifest(module)));
        var logs = new LogLines();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(logs));
        await StartProxyAsync(chunkSize: 16, registry: stub, loggers: loggers);
        var app = $"{StubRegistry.Host}/test/nodigest:v1";

        await RequestAsync(app, formats: ["binary"]);
        var failure = JsonSerializer.Deserialize<RegistryFailureMessage>((await NextMessageOnAsync(Topics.RegistryFailure)).Payload.Span)!;
        Volatile.Write(ref fixedManifest, 1);
        await RequestAsync(app, formats: ["binary"]);
        var delivered = await ReceiveBinaryImageAsync(app);

        failure.Error.ShouldBe($"image {app}: layer 0 of the manifest has no digest");
        logs.Lines.ShouldContain($"Warning: Image {app} cannot be delivered: image {app}: layer 0 of the manifest has no digest");
        delivered.Bytes.ShouldBe(module);
    }

    [Fact]
    public async Task GivenADeliveryThatRunsOutOfMemory_WhenRequested_ThenItIsLoggedAndTheFailurePublished()
    {
        // An artefact one byte over the largest array (a limit the settings loader no longer accepts): allocating it
        // throws OutOfMemoryException, which the delivery used to let through unlogged and unanswered.
        var size = Array.MaxLength + 1L;
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal) ? StubRegistry.Blob(Modules.Addition) : StubRegistry.Manifest(Modules.Addition, size: size)));
        var logs = new LogLines();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(logs));
        var node = await StartProxyAsync(chunkSize: 1 << 20, maxArtifactBytes: long.MaxValue, registry: stub, loggers: loggers);
        var app = $"{StubRegistry.Host}/test/huge:v1";

        await RequestAsync(app, formats: ["binary"]);
        for (var i = 0; i < 200 && (stub.Count(StubRegistry.DigestOf(Modules.Addition)) == 0 || node.InFlight > 0); i++)
        {
            await Task.Delay(25, Ct);
        }

        logs.Lines.ShouldContain($"Error: Image {app}: unexpected proxy error", string.Join('\n', logs.Lines));
        node.Metrics.Failures.ShouldBe(1);
        var failure = JsonSerializer.Deserialize<RegistryFailureMessage>((await NextMessageOnAsync(Topics.RegistryFailure)).Payload.Span)!;
        failure.Error.ShouldBe($"the proxy ran out of memory delivering {app}: Array dimensions exceeded supported range.");
    }

    [Fact]
    public async Task GivenMalformedRequests_WhenReceived_ThenTheyAreIgnoredAndTheProxyGoesOn()
    {
        var node = await StartProxyAsync(chunkSize: 4096);
        var app = await PushAsync("after", Modules.Addition);
        var topic = Topics.Of(BaseTopic, Topics.RegistryRequest);

        foreach (var junk in new[] { "nope", "{}", """{"app_name":42}""", """{"app_name":""}""", "\u0000\u0001" })
        {
            await _observer.PublishAsync(topic, Encoding.UTF8.GetBytes(junk), MqttQualityOfServiceLevel.ExactlyOnce, Ct);
        }

        await RequestAsync(app);

        (await ReceiveImageAsync(app)).Bytes.ShouldBe(Modules.Addition);
        node.Metrics.Requests.ShouldBe(1);
    }

    /// <summary>
    /// A request kept retained by the broker (the protocol publishes with retain=false) is ignored: it was handed to the
    /// proxy at every subscribe, and the image pulled and published again at each reconnect for nobody waiting.
    /// </summary>
    [Fact]
    public async Task GivenARetainedRequest_WhenTheProxySubscribes_ThenItIsIgnoredAndALiveRequestIsServed()
    {
        var app = await PushAsync("retained", Modules.Addition);
        var topic = Topics.Of(BaseTopic, Topics.RegistryRequest);
        await _observer.PublishAsync(topic, JsonSerializer.SerializeToUtf8Bytes(new RegistryRequestMessage(app)), MqttQualityOfServiceLevel.ExactlyOnce, retain: true, orderKey: null, Ct);
        try
        {
            var node = await StartProxyAsync(chunkSize: 4096);
            await RequestAsync(app);

            (await ReceiveImageAsync(app)).Bytes.ShouldBe(Modules.Addition);
            node.Metrics.Requests.ShouldBe(1);
        }
        finally
        {
            // an empty retained payload clears the broker's copy
            await _observer.PublishAsync(topic, ReadOnlyMemory<byte>.Empty, MqttQualityOfServiceLevel.ExactlyOnce, retain: true, orderKey: null, Ct);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // a proxy that sends JSON whatever the request announces, as the original does
    public async Task GivenAProplet_WhenATaskNamesAnImage_ThenTheProxyDeliversItAndThePropletRunsIt(bool binaryChunks)
    {
        var proxy = await StartProxyAsync(chunkSize: 16, binaryChunks: binaryChunks);
        var app = await PushAsync("run", Modules.Addition);
        await StartPropletAsync();

        await StartTaskAsync("img-task", app);

        var result = await NextOnAsync(Topics.Results);
        result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null, result.GetRawText());
        result.GetProperty("results").GetString().ShouldBe("42");
        proxy.Metrics.BinaryRequests.ShouldBe(binaryChunks ? 1 : 0);
    }

    /// <summary>A cached tag's chunks go out while the tag is resolved again; the last only if it still names that
    /// artefact. Here the tag moved in between: the proplet (holding no verified images, so it names none in
    /// <c>have</c>) runs the module the tag names now, never the cached one.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task GivenACachedTagThatMoved_WhenRequestedAgain_ThenThePropletRunsTheModuleTheTagNamesNow(bool binaryChunks)
    {
        var proxy = await StartProxyAsync(chunkSize: 16, binaryChunks: binaryChunks);
        var app = await PushAsync("moved", Modules.Addition);
        await StartPropletAsync(PropletSettings() with { ImageCacheBytes = 0 });

        await StartTaskAsync("moved-1", app);
        (await NextOnAsync(Topics.Results)).GetProperty("results").GetString().ShouldBe("42");
        await StartTaskAsync("moved-2", app);
        (await NextOnAsync(Topics.Results)).GetProperty("results").GetString().ShouldBe("42", "the cached tag, resolved again to the same artefact");

        await TestRegistry.Client(_http).PushWasmAsync(ImageReference.Parse(app), Subtraction, Ct); // the same tag, moved
        await StartTaskAsync("moved-3", app);
        var result = await NextOnAsync(Topics.Results);
        result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null, result.GetRawText());
        result.GetProperty("results").GetString().ShouldBe("-2", "the module the tag names now (20 - 22)");
        proxy.Metrics.Fetches.ShouldBe(2);
        proxy.Metrics.CacheHits.ShouldBe(1);
    }

    private static readonly byte[] Subtraction = Wat.ToWasm("(module (func (export \"main\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.sub))");

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task GivenAChunkLostWhileAPullIsPublished_WhenThePropletStalls_ThenItAsksForThatChunkAloneAndRunsTheModule(bool binaryChunks)
    {
        // 40 chunks, so the pull is published while it arrives (the pipelined path); chunk 3 is lost the first time only.
        var proxy = await StartProxyAsync(chunkSize: 1024, binaryChunks: binaryChunks);
        var lost = 0;
        proxy.LoseChunk = (_, index) => ValueTask.FromResult(index == 3 && Interlocked.Exchange(ref lost, 1) == 0);
        var app = await PushAsync("lost", Padded(Modules.Addition, 40 * 1024));
        await StartPropletAsync(PropletSettings() with { ChunkStall = TimeSpan.FromMilliseconds(300) });

        var requests = await RunAdditionAsync("img-lost", app);

        lost.ShouldBe(1);
        proxy.Metrics.ChunkFailures.ShouldBe(1);
        requests.Count.ShouldBe(2, "the first request and one re-request");
        requests[0].Chunks.ShouldBeNull();
        requests[1].Chunks.ShouldBe([3]);
        requests.ShouldAllBe(r => r.Formats!.SequenceEqual(new[] { "binary" }));
        proxy.Metrics.BinaryRequests.ShouldBe(binaryChunks ? 2 : 0);
    }

    /// <summary>
    /// PROXY_REGISTRY_TIMEOUT bounds the registry: a pull published while it arrives to a slow broker (each chunk's
    /// publish waits, the publication's window fills and holds the pull) is not cut off as the registry's fault.
    /// </summary>
    [Fact]
    public async Task GivenASlowBroker_WhenAPullIsPublishedWhileItArrives_ThenTheRegistryTimeoutCountsOnlyTheRegistry()
    {
        // The blob comes a chunk per read (a real registry may send 40 KB in one), so the publication's waits fall
        // between the registry's reads, each of which sees the registry timeout's token.
        var module = RandomNumberGenerator.GetBytes(40 * 1024);
        using var stub = new StubRegistry((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal)
            ? new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new SlicedStream(module, 1024)) }
            : StubRegistry.Manifest(module)));
        var proxy = await StartProxyAsync(chunkSize: 1024, registryTimeout: TimeSpan.FromSeconds(1), registry: stub);
        proxy.LoseChunk = async (_, _) =>
        {
            await Task.Delay(400, Ct); // 40 chunks, 8 at once: ~2 s of publishing
            return false;
        };
        var app = $"{StubRegistry.Host}/test/slow-broker:v1";

        await RequestAsync(app, formats: ["binary"]);
        var image = await ReceiveBinaryImageAsync(app);

        image.Bytes.ShouldBe(module);
        proxy.Metrics.Fetches.ShouldBe(1);
        proxy.Metrics.ChunkFailures.ShouldBe(0);
    }

    /// <summary>
    /// A broker outage mid-delivery: each chunk's publish waited PROXY_MQTT_TIMEOUT for the connection, eight at a time,
    /// so a 100 MiB image held its flight and fetch slot for about 50 minutes. Once a publish times out with the
    /// connection down, the rest are counted as failed without being sent and the delivery ends. The hook plays the
    /// publishes' timeouts; the connection is really down (disconnected, and not reconnecting).
    /// </summary>
    [Fact]
    public async Task GivenTheBrokerGoneMidDelivery_WhenAPublishTimesOut_ThenTheRestAreCountedFailedWithoutBeingSentAndTheDeliveryEnds()
    {
        var module = RandomNumberGenerator.GetBytes(400 * 100);
        var app = await PushAsync("outage", module);
        var proxy = await StartProxyAsync(chunkSize: 100);
        var calls = 0;
        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        proxy.LoseChunk = async (_, _) =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                await proxy.Connection!.DisconnectAsync(Ct);
                disconnected.SetResult();
            }

            await disconnected.Task.WaitAsync(Ct);
            throw new TimeoutException("Not connected within 30 s (test)");
        };

        await RequestAsync(app, formats: ["binary"]);
        for (var i = 0; i < 1500 && (proxy.Metrics.ChunkFailures < 400 || proxy.InFlight > 0); i++)
        {
            await Task.Delay(20, Ct);
        }

        proxy.Metrics.ChunkFailures.ShouldBe(400);
        proxy.InFlight.ShouldBe(0, "the delivery ended");
        calls.ShouldBeLessThanOrEqualTo(ChunkPublication.Window, "only the publishes under way when the connection went down were tried");
        proxy.Metrics.Chunks.ShouldBe(0);
    }

    /// <summary>Only what a pull needs of a layer's descriptor is remembered for a digest reference: its annotations
    /// (up to the manifest's 4 MiB) were pinned for the proxy's life, 10,000 references at most.</summary>
    [Fact]
    public async Task GivenALayerWithALargeAnnotation_WhenRequestedByDigest_ThenTheRememberedLayerHasOnlyItsDigestAndSize()
    {
        var module = Modules.Addition;
        var manifest = StubRegistry.ManifestJson(module, annotations: new Dictionary<string, string> { ["note"] = new('x', 1 << 20) });
        using var stub = new StubRegistry((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal)
            ? StubRegistry.Blob(module)
            : StubRegistry.ManifestOf(manifest)));
        var node = await StartProxyAsync(chunkSize: 4096, registry: stub);
        var app = $"{StubRegistry.Host}/test/annotated@{StubRegistry.DigestOf(manifest)}";

        await RequestAsync(app, formats: ["binary"]);
        (await ReceiveBinaryImageAsync(app)).Bytes.ShouldBe(module);

        var layer = node.LayersByDigestReference.ShouldHaveSingleItem().Value;
        layer.ShouldBe(new Descriptor(null, StubRegistry.DigestOf(module), module.Length));
        layer.Annotations.ShouldBeNull();
    }

    /// <summary>A digest of an algorithm Verify cannot check was accepted with hex of any length, and remembered for its
    /// reference or tag before the blob failed: it is refused before anything is remembered.</summary>
    [Fact]
    public async Task GivenALayerDigestOfAnUnknownAlgorithmWithMegabytesOfHex_WhenRequested_ThenItFailsAsInvalidAndNothingIsRemembered()
    {
        var module = Modules.Addition;
        var manifest = StubRegistry.ManifestJson(module, digest: "foo:" + new string('a', 10_000));
        using var stub = new StubRegistry((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal)
            ? StubRegistry.Blob(module)
            : StubRegistry.ManifestOf(manifest)));
        var node = await StartProxyAsync(chunkSize: 4096, registry: stub);
        var byTag = $"{StubRegistry.Host}/test/foo-digest:v1";
        var byDigest = $"{StubRegistry.Host}/test/foo-digest@{StubRegistry.DigestOf(manifest)}";

        await RequestAsync(byTag, formats: ["binary"]);
        var first = JsonSerializer.Deserialize<RegistryFailureMessage>((await NextMessageOnAsync(Topics.RegistryFailure)).Payload.Span)!;
        await RequestAsync(byDigest, formats: ["binary"]);
        var second = JsonSerializer.Deserialize<RegistryFailureMessage>((await NextMessageOnAsync(Topics.RegistryFailure)).Payload.Span)!;

        first.Error.ShouldNotBeNull().ShouldContain("layer 0 of the manifest has an invalid digest 'foo:aaaa");
        second.Error.ShouldNotBeNull().ShouldContain("has an invalid digest");
        node.LayersByDigestReference.ShouldBeEmpty();
        node.TagsRemembered.ShouldBe(0);
    }

    /// <summary>A request's <c>chunks</c> (copied into its flight's key and a deferred set) and <c>app_name</c> (repeated
    /// in the failure, published and logged) were taken at any length: over the proplet's 100,000 chunks, a negative
    /// index or a name over 1,024 characters is malformed.</summary>
    [Theory]
    [InlineData("many-chunks", "chunks lists 100001 entries, over 100000")]
    [InlineData("negative-chunk", "chunks lists a negative index")]
    [InlineData("long-name", "app_name is 1025 characters, over 1024")]
    public async Task GivenARequestWithOversizedFields_WhenReceived_ThenItIsIgnoredAsMalformed(string kind, string reason)
    {
        var logs = new LogLines();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(logs));
        var node = await StartProxyAsync(chunkSize: 4096, loggers: loggers);
        var app = await PushAsync("oversized", Modules.Addition);
        var request = kind switch
        {
            "many-chunks" => new RegistryRequestMessage(app) { Chunks = [.. Enumerable.Range(0, 100_001)] },
            "negative-chunk" => new RegistryRequestMessage(app) { Chunks = [0, -1] },
            _ => new RegistryRequestMessage(app + new string('x', 1025 - app.Length)),
        };

        await _observer.PublishAsync(Topics.Of(BaseTopic, Topics.RegistryRequest), JsonSerializer.SerializeToUtf8Bytes(request), MqttQualityOfServiceLevel.ExactlyOnce, Ct);
        await RequestAsync(app);
        (await ReceiveImageAsync(app)).Bytes.ShouldBe(Modules.Addition);

        logs.Lines.ShouldContain($"Warning: Ignored a malformed message on {Topics.Of(BaseTopic, Topics.RegistryRequest)}: {reason}", string.Join('\n', logs.Lines));
        node.Metrics.Requests.ShouldBe(1);
    }

    [Fact]
    public async Task GivenARequestAnnouncingBinary_WhenPulledThenCached_ThenRawChunksArriveOnRegistryChunkAndTheCacheKeepsOnlyTheBytes()
    {
        var node = await StartProxyAsync(chunkSize: 1000);
        var module = RandomNumberGenerator.GetBytes(4500);
        var app = await PushAsync("binary", module);
        var sha = Convert.ToHexStringLower(SHA256.HashData(module));

        await RequestAsync(app, formats: ["binary"]);
        var pulled = await ReceiveBinaryImageAsync(app);
        await RequestAsync(app, formats: ["json", "binary"]);
        var cached = await ReceiveBinaryImageAsync(app);
        var cacheAfterBinary = node.Cache.Bytes;
        await RequestAsync(app); // an old proplet's request: JSON, its chunks encoded now
        var json = await ReceiveImageAsync(app);

        pulled.Bytes.ShouldBe(module);
        cached.Bytes.ShouldBe(module);
        json.Bytes.ShouldBe(module);
        pulled.Headers.ShouldAllBe(h => h.Sha256 == sha && h.Size == module.Length && h.TotalChunks == 5);
        pulled.Headers.Select(h => h.Length).Order().ShouldBe([500, 1000, 1000, 1000, 1000]);
        node.Metrics.Fetches.ShouldBe(1);
        node.Metrics.CacheHits.ShouldBe(2);
        node.Metrics.BinaryRequests.ShouldBe(2);
        cacheAfterBinary.ShouldBe(module.Length); // no binary copy, no JSON until a JSON request needed it
        node.Cache.Bytes.ShouldBe(module.Length + (4 * 1336) + 668);
    }

    [Fact]
    public async Task GivenBinaryChunksTurnedOff_WhenARequestAnnouncesThem_ThenItGetsJson()
    {
        var node = await StartProxyAsync(chunkSize: 10, binaryChunks: false);
        var app = await PushAsync("nobinary", Modules.Addition);

        await RequestAsync(app, formats: ["binary"]);

        (await ReceiveImageAsync(app)).Bytes.ShouldBe(Modules.Addition);
        node.Metrics.BinaryRequests.ShouldBe(0);
    }

    [Fact]
    public async Task GivenOurPropletAndAnOldStyleRequestForOneImageAtOnce_WhenServed_ThenBothGetTheImage()
    {
        // Two flights (binary for our proplet, JSON for the "old proplet" played by the observer), pulled at once.
        var proxy = await StartProxyAsync(chunkSize: 1024);
        var module = Padded(Modules.Addition, 40 * 1024);
        var app = await PushAsync("mixed", module);
        await StartPropletAsync();

        await StartTaskAsync("img-mixed", app);
        await RequestAsync(app);
        var json = new SortedDictionary<int, byte[]>();
        var total = int.MaxValue;
        JsonElement? result = null;
        while (result is null || json.Count < total)
        {
            var message = await _observed.ReceiveAsync(Ct);
            if (message.Topic == Topics.Of(BaseTopic, Topics.RegistryChunks))
            {
                var chunk = JsonSerializer.Deserialize<ChunkMessage>(message.Payload.Span)!;
                total = chunk.TotalChunks;
                json.TryAdd(chunk.ChunkIndex, Convert.FromBase64String(chunk.Data!));
            }
            else if (message.Topic == Topics.Of(BaseTopic, Topics.Results))
            {
                result = JsonSerializer.Deserialize<JsonElement>(message.Payload.Span);
            }
        }

        result.Value.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null, result.Value.GetRawText());
        result.Value.GetProperty("results").GetString().ShouldBe("42");
        json.Values.SelectMany(c => c).ToArray().ShouldBe(module);
        proxy.Metrics.BinaryRequests.ShouldBe(1);
    }

    [Fact]
    public async Task GivenABinaryChunkCorruptedOnTheWay_WhenThePropletAssemblesTheImage_ThenTheTaskFailsVerification()
    {
        // No proxy: the observer answers the proplet's request with binary chunks, one byte of chunk 1 flipped.
        await StartPropletAsync();
        const string app = "127.0.0.1:1/test/corrupted:v1";
        var corrupted = Modules.Addition.ToArray();
        corrupted[20] ^= 0x01;
        var chunks = new BinaryChunks(corrupted, Convert.ToHexStringLower(SHA256.HashData(Modules.Addition)), 16);

        await StartTaskAsync("img-corrupted", app);
        var request = JsonSerializer.Deserialize<RegistryRequestMessage>((await NextMessageOnAsync(Topics.RegistryRequest)).Payload.Span)!;
        request.Formats.ShouldBe(["binary"]);
        for (var i = 0; i < chunks.Layout.Total; i++)
        {
            await _observer.PublishAsync(Topics.Of(BaseTopic, Topics.RegistryBinaryChunks), chunks.Payload(app, i), MqttQualityOfServiceLevel.ExactlyOnce, Ct);
        }

        var error = (await NextOnAsync(Topics.Results)).GetProperty("error").GetString().ShouldNotBeNull();
        error.ShouldStartWith($"image {app} failed verification: its chunks hash to sha256 {Convert.ToHexStringLower(SHA256.HashData(corrupted))}");
    }

    [Fact]
    public async Task GivenMalformedBinaryChunks_WhenThePropletReceivesThem_ThenEachIsLoggedAndDroppedAndItStillRunsImages()
    {
        await StartProxyAsync(chunkSize: 16);
        var app = await PushAsync("malformed", Modules.Addition);
        var logs = new LogLines();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(logs));
        await StartPropletAsync(loggers: loggers);
        string[] junk = ["no header", "{\"app_name\":\n", """{"app_name":"x","chunk_idx":0,"total_chunks":1,"length":9}""" + "\nabc", "\n"];

        foreach (var payload in junk)
        {
            await _observer.PublishAsync(Topics.Of(BaseTopic, Topics.RegistryBinaryChunks), Encoding.UTF8.GetBytes(payload), MqttQualityOfServiceLevel.ExactlyOnce, Ct);
        }

        await RunAdditionAsync("img-after-junk", app);
        for (var i = 0; i < 200 && logs.Lines.Count(l => l.Contains("registry/chunk", StringComparison.Ordinal)) < junk.Length; i++)
        {
            await Task.Delay(25, Ct);
        }

        var dropped = logs.Lines.Where(l => l.Contains($"Dropped a malformed message on {BaseTopic}/registry/chunk", StringComparison.Ordinal)).ToList();
        dropped.Count.ShouldBe(junk.Length, string.Join('\n', logs.Lines));
        dropped.ShouldContain(l => l.EndsWith("the binary chunk has no header line", StringComparison.Ordinal));
        dropped.ShouldContain(l => l.Contains("the binary chunk's header is not valid JSON", StringComparison.Ordinal));
        dropped.ShouldContain(l => l.EndsWith("the binary chunk carries 3 bytes, its header says 9", StringComparison.Ordinal));
    }

    /// <summary>Starts task <paramref name="id"/> (the addition module's main(20, 22) from the image <paramref name="app"/>),
    /// checks that its result is 42, and returns the registry requests seen meanwhile.</summary>
    private async Task<List<RegistryRequestMessage>> RunAdditionAsync(string id, string app)
    {
        await StartTaskAsync(id, app);
        var requests = new List<RegistryRequestMessage>();
        while (true)
        {
            var message = await _observed.ReceiveAsync(Ct);
            if (message.Topic == Topics.Of(BaseTopic, Topics.RegistryRequest))
            {
                requests.Add(JsonSerializer.Deserialize<RegistryRequestMessage>(message.Payload.Span)!);
            }
            else if (message.Topic == Topics.Of(BaseTopic, Topics.Results))
            {
                var result = JsonSerializer.Deserialize<JsonElement>(message.Payload.Span);
                result.GetProperty("task_id").GetString().ShouldBe(id);
                result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null, result.GetRawText());
                result.GetProperty("results").GetString().ShouldBe("42");
                return requests;
            }
        }
    }

    /// <summary><paramref name="module"/> with a custom section that brings it to about <paramref name="size"/> bytes.</summary>
    private static byte[] Padded(byte[] module, int size)
    {
        var body = new byte[Math.Max(1, size - module.Length - 4)];
        body[0] = 0; // an empty section name
        var sectionLength = new List<byte>();
        for (var rest = (uint)body.Length; ; rest >>= 7)
        {
            sectionLength.Add((byte)(rest < 0x80 ? rest : (rest & 0x7F) | 0x80));
            if (rest < 0x80)
            {
                break;
            }
        }

        return [.. module, 0, .. sectionLength, .. body];
    }

    [Fact]
    public async Task GivenAProplet_WhenTheImageIsUnknown_ThenTheTaskFailsWithTheProxysReason()
    {
        await StartProxyAsync(chunkSize: 512);
        await StartPropletAsync();
        var app = $"{TestRegistry.Anonymous}/test/never-pushed:v1";

        await StartTaskAsync("img-missing", app, inputs: false);

        var result = await NextOnAsync(Topics.Results);
        var error = result.GetProperty("error").GetString().ShouldNotBeNull();
        error.ShouldStartWith($"image {app}: ");
        error.ShouldContain("not found");
    }

    [Fact]
    public void GivenAChunk_WhenWritten_ThenItIsTheOriginalsJsonPlusSha256AndSize()
    {
        var artifact = new Artifact("sha256:00", [1, 2, 3, 251, 255], "abc");

        var json = Encoding.UTF8.GetString(ProxyNode.ChunkJson("r/a:v1", artifact, 1, 2, 3));

        json.ShouldBe("""{"app_name":"r/a:v1","chunk_idx":1,"total_chunks":2,"data":"+/8=","sha256":"abc","size":5}""");
        JsonSerializer.Deserialize<ChunkMessage>(json).ShouldBe(new ChunkMessage("r/a:v1", 1, 2, "+/8=") { Sha256 = "abc", Size = 5 });
    }

    /// <summary>Starts a proplet on the test's channel (disposed with the test) and subscribes the observer to the results.</summary>
    private async Task StartPropletAsync(PropletSettings? settings = null, ILoggerFactory? loggers = null)
    {
        var proplet = new PropletNode(settings ?? PropletSettings(), loggers ?? NullLoggerFactory.Instance, TimeProvider.System);
        _owned.Add(proplet);
        await proplet.StartAsync(Ct);
        await _observer.SubscribeAsync(Topics.Of(BaseTopic, Topics.Results), MqttQualityOfServiceLevel.ExactlyOnce, Ct);
    }

    /// <summary>Starts task <paramref name="id"/>: main of the image <paramref name="app"/>, with the inputs 20 and 22 or none.</summary>
    private Task StartTaskAsync(string id, string app, bool inputs = true)
    {
        var start = new StartMessage { Id = id, Name = "main", ImageUrl = app, Inputs = inputs ? ["20", "22"] : null };
        return _observer.PublishAsync(Topics.Of(BaseTopic, Topics.Start), JsonSerializer.SerializeToUtf8Bytes(start), MqttQualityOfServiceLevel.ExactlyOnce, Ct);
    }

    private PropletSettings PropletSettings() => new()
    {
        TenantId = _tenant,
        ChannelId = "c1",
        EntityId = "proplet-" + _tenant,
        ApiKey = "k",
        MqttAddress = TestRegistry.Mqtt,
        MetricsEnabled = false,
        MetricsInterval = TimeSpan.Zero,
        LivelinessInterval = TimeSpan.FromSeconds(30),
        ChunkWait = TimeSpan.FromSeconds(30),
    };

    private async Task<ProxyNode> StartProxyAsync(
        int chunkSize, long maxArtifactBytes = 1 << 20, long cacheBytes = 256 << 20, bool binaryChunks = true, HttpMessageHandler? registry = null, ILoggerFactory? loggers = null,
        TimeSpan? registryTimeout = null)
    {
        var settings = new ProxySettings
        {
            TenantId = _tenant,
            ChannelId = "c1",
            EntityId = "proxy-" + _tenant,
            ApiKey = "k",
            MqttAddress = TestRegistry.Mqtt,
            ChunkSize = chunkSize,
            MaxArtifactBytes = maxArtifactBytes,
            CacheBytes = cacheBytes,
            BinaryChunks = binaryChunks,
            RegistryTimeout = registryTimeout ?? TimeSpan.FromSeconds(20),
        };
        var node = registry is null
            ? new ProxyNode(settings, loggers ?? NullLoggerFactory.Instance, TimeProvider.System)
            : new ProxyNode(settings, loggers ?? NullLoggerFactory.Instance, TimeProvider.System, registry);
        _owned.Insert(0, node);
        await node.StartAsync(Ct);
        return node;
    }

    /// <summary>The node's published-chunk count once it reaches <paramref name="expected"/> (at most 10 s): a chunk is
    /// counted when the broker acknowledges its publish, which may be just after a subscriber received it.</summary>
    private static async Task<long> PublishedChunksAsync(ProxyNode node, long expected)
    {
        for (var i = 0; i < 500 && node.Metrics.Chunks < expected; i++)
        {
            await Task.Delay(20, Ct);
        }

        return node.Metrics.Chunks;
    }

    private async Task<string> PushAsync(string name, byte[] module)
    {
        var reference = ImageReference.Parse($"{TestRegistry.Anonymous}/{TestRegistry.Repository(name)}:v1");
        await TestRegistry.Client(_http).PushWasmAsync(reference, module, Ct);
        return reference.ToString();
    }

    private Task RequestAsync(string app, IReadOnlyList<int>? chunks = null, IReadOnlyList<string>? have = null, IReadOnlyList<string>? formats = null) =>
        _observer.PublishAsync(
            Topics.Of(BaseTopic, Topics.RegistryRequest),
            JsonSerializer.SerializeToUtf8Bytes(new RegistryRequestMessage(app) { Chunks = chunks, Have = have, Formats = formats }),
            MqttQualityOfServiceLevel.ExactlyOnce,
            Ct);

    private async Task<JsonElement> NextChunkAsync() => await NextOnAsync(Topics.RegistryChunks);

    private async Task<JsonElement> NextOnAsync(string path) => JsonSerializer.Deserialize<JsonElement>((await NextMessageOnAsync(path)).Payload.Span);

    /// <summary>The next message on <paramref name="path"/>. Waiting for chunks of one format, a chunk of the other
    /// format or a failure ends the test (a request gets one format, never both).</summary>
    private async Task<ReceivedMessage> NextMessageOnAsync(string path)
    {
        var chunkPaths = new[] { Topics.RegistryChunks, Topics.RegistryBinaryChunks };
        while (true)
        {
            var message = await _observed.ReceiveAsync(Ct);
            if (message.Topic == Topics.Of(BaseTopic, path))
            {
                return message;
            }

            if (chunkPaths.Contains(path) && message.Topic == Topics.Of(BaseTopic, Topics.RegistryFailure))
            {
                throw new InvalidOperationException("the proxy failed: " + Encoding.UTF8.GetString(message.Payload.Span));
            }

            if (chunkPaths.Contains(path) && chunkPaths.Any(other => other != path && message.Topic == Topics.Of(BaseTopic, other)))
            {
                throw new InvalidOperationException($"a chunk on {message.Topic} while waiting for one on {path}");
            }
        }
    }

    /// <summary>Every binary chunk of one delivery of <paramref name="app"/>, joined in index order, and their headers.</summary>
    private async Task<(byte[] Bytes, List<BinaryChunkHeader> Headers)> ReceiveBinaryImageAsync(string app)
    {
        var chunks = new SortedDictionary<int, byte[]>();
        var headers = new List<BinaryChunkHeader>();
        var total = int.MaxValue;
        while (chunks.Count < total)
        {
            var payload = (await NextMessageOnAsync(Topics.RegistryBinaryChunks)).Payload.Span;
            var end = payload.IndexOf(BinaryChunkHeader.Separator);
            var header = JsonSerializer.Deserialize<BinaryChunkHeader>(payload[..end])!;
            header.AppName.ShouldBe(app);
            payload[(end + 1)..].Length.ShouldBe(header.Length);
            headers.Add(header);
            total = header.TotalChunks;
            chunks[header.ChunkIndex] = payload[(end + 1)..].ToArray();
        }

        return ([.. chunks.Values.SelectMany(c => c)], headers);
    }

    /// <summary>Every chunk of one delivery of <paramref name="app"/>, joined in index order.</summary>
    private async Task<(byte[] Bytes, string? Sha256, int Total)> ReceiveImageAsync(string app)
    {
        var chunks = new SortedDictionary<int, byte[]>();
        string? sha = null;
        var total = int.MaxValue;
        while (chunks.Count < total)
        {
            var chunk = JsonSerializer.Deserialize<ChunkMessage>((await NextChunkAsync()).GetRawText())!;
            chunk.AppName.ShouldBe(app);
            total = chunk.TotalChunks;
            sha = chunk.Sha256;
            chunks[chunk.ChunkIndex] = Convert.FromBase64String(chunk.Data!);
        }

        return ([.. chunks.Values.SelectMany(c => c)], sha, total);
    }
}
