using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using Microsoft.Extensions.Logging;
using Propeller.Proxy.Oci;
using Propeller.Tests.Shared;

namespace Propeller.Proxy.Tests;

/// <summary>A pull's GETs retried on what says "later" (a <see cref="StubRegistry"/>: the real registry cannot be made to
/// answer 503 once).</summary>
public sealed class RegistryRetryTests
{
    private static readonly byte[] Module = Modules.Addition;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenARegistryAnswering503Once_WhenPulled_ThenTheManifestAndTheBlobAreFetchedAgainAndEachRetryIsLogged()
    {
        var failed = new HashSet<string>();
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            failed.Add(request.RequestUri!.AbsolutePath) ? new HttpResponseMessage(HttpStatusCode.ServiceUnavailable)
            : request.RequestUri.AbsolutePath.Contains("/manifests/", StringComparison.Ordinal) ? StubRegistry.Manifest(Module)
            : StubRegistry.Blob(Module)));
        var logs = new LogLines();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(logs));
        var client = Client(stub, loggers.CreateLogger("registry"));
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/flaky:v1");

        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);
        var bytes = await client.GetBlobAsync(reference, layer, 1 << 20, Ct);

        bytes.ShouldBe(Module);
        stub.Count("/manifests/v1").ShouldBe(2);
        stub.Count(layer.Digest).ShouldBe(2);
        logs.Lines.Count(l => l.StartsWith($"Warning: Image {reference}: registry request failed (HTTP 503 Service Unavailable); retry 1 of 3 in ", StringComparison.Ordinal)).ShouldBe(2);
    }

    [Fact]
    public async Task GivenARegistryRefusingConnectionsOnce_WhenPulled_ThenTheRequestIsMadeAgain()
    {
        var refused = 0;
        using var stub = new StubRegistry((_, _) => Interlocked.Increment(ref refused) == 1
            ? throw new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (registry.stub:5000)")
            : Task.FromResult(StubRegistry.Manifest(Module)));

        var layer = await Client(stub).ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/restarting:v1"), 1 << 20, Ct);

        layer.Digest.ShouldBe(StubRegistry.DigestOf(Module));
        refused.ShouldBe(2);
    }

    [Fact]
    public async Task GivenARegistryThatStaysUnavailable_WhenPulled_ThenItIsTriedFourTimesAndTheErrorHasTheLastStatus()
    {
        using var stub = new StubRegistry((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.BadGateway)));
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/down:v1");

        var error = await Should.ThrowAsync<RegistryException>(() => Client(stub).ResolveLayerAsync(reference, 1 << 20, Ct));

        error.Message.ShouldBe($"image {reference}: manifest request failed (HTTP 502 Bad Gateway)");
        stub.Requests.Count.ShouldBe(1 + RegistryClient.MaxRetries);
    }

    [Theory]
    [InlineData(HttpStatusCode.TooManyRequests, 3600)] // asks for longer than the proxy waits: fails at once
    [InlineData(HttpStatusCode.NotFound, 0)] // not a status that says "later"
    public async Task GivenAnAnswerNotWorthWaitingFor_WhenPulled_ThenItIsNotRetried(HttpStatusCode status, int retryAfter)
    {
        using var stub = new StubRegistry((_, _) =>
        {
            var response = new HttpResponseMessage(status);
            response.Headers.RetryAfter = new RetryConditionHeaderValue(TimeSpan.FromSeconds(retryAfter));
            return Task.FromResult(response);
        });
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/later:v1");

        var error = await Should.ThrowAsync<RegistryException>(() => Client(stub).ResolveLayerAsync(reference, 1 << 20, Ct));

        error.Message.ShouldContain($"HTTP {(int)status}");
        stub.Requests.Count.ShouldBe(1);
    }

    /// <summary>A manifest, or an error answer, whose body has no length and does not end is read no further than the
    /// limit (4 MiB, 64 KiB): the pull fails with the reason instead of reading until the registry timeout.</summary>
    [Fact]
    public async Task GivenAnEndlessBodyWithoutALength_WhenPulled_ThenItIsReadOnlyUpToTheLimit()
    {
        using var stub = new StubRegistry((request, _) => Task.FromResult(new HttpResponseMessage(
            request.RequestUri!.AbsolutePath.EndsWith("/v1", StringComparison.Ordinal) ? HttpStatusCode.OK : HttpStatusCode.NotFound)
        {
            Content = new StreamContent(new EndlessStream()),
        }));
        var client = Client(stub);

        var tooLarge = await Should.ThrowAsync<RegistryException>(() => client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/endless:v1"), 1 << 20, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct));
        tooLarge.Message.ShouldContain("the manifest is larger than");
        var missing = await Should.ThrowAsync<RegistryException>(() => client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/endless:v2"), 1 << 20, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct));
        missing.Message.ShouldContain("HTTP 404");
    }

    /// <summary>A token service that answers without end, or with what is not a JSON object, fails the pull with the reason.</summary>
    [Theory]
    [InlineData(true, "answered with more than 1048576 bytes")]
    [InlineData(false, "answered with something that is not a JSON object")]
    public async Task GivenATokenServiceAnsweringEndlesslyOrNotJson_WhenPulled_ThenTheErrorSaysSo(bool endless, string reason)
    {
        using var stub = new StubRegistry((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath == "/token"
            ? new HttpResponseMessage(HttpStatusCode.OK) { Content = endless ? new StreamContent(new EndlessStream()) : new StringContent("<html>") }
            : StubRegistry.Challenge($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"")));
        var client = Client(stub);

        var error = await Should.ThrowAsync<RegistryException>(() => client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/token:v1"), 1 << 20, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct));

        error.Message.ShouldContain(reason);
    }

    /// <summary>A 401 whose token could not be had (refused here) is disposed: it holds its connection until then.</summary>
    [Fact]
    public async Task GivenATokenServiceRefusingAToken_WhenPulled_ThenTheChallengeIsDisposed()
    {
        var challenges = new ConcurrentQueue<Tracked>();
        using var stub = new StubRegistry((request, _) =>
        {
            if (request.RequestUri!.AbsolutePath == "/token")
            {
                return Task.FromResult(new HttpResponseMessage(HttpStatusCode.Forbidden));
            }

            var challenge = StubRegistry.Challenge($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"");
            var body = new Tracked();
            challenge.Content = body;
            challenges.Enqueue(body);
            return Task.FromResult(challenge);
        });
        var client = Client(stub);

        var error = await Should.ThrowAsync<RegistryException>(() => client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/token:v1"), 1 << 20, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct));

        error.Message.ShouldContain("refused a token");
        challenges.ShouldNotBeEmpty();
        challenges.ShouldAllBe(body => body.Disposed);
    }

    /// <summary>A body that notes its disposal.</summary>
    private sealed class Tracked() : StringContent("{}")
    {
        public bool Disposed { get; private set; }

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }
    }


    /// <summary>The connection cut in the middle of the blob: a failure naming the image and the registry. It was an
    /// IOException past the client's mapping, reported as an "unexpected proxy error".</summary>
    [Fact]
    public async Task GivenABlobWhoseConnectionIsCutMidway_WhenPulled_ThenTheFailureNamesTheImageAndTheRegistry()
    {
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.RequestUri!.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal)
                ? new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new CutStream(Module[..10])) }
                : StubRegistry.Manifest(Module)));
        var client = Client(stub);
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/cut:v1");
        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);

        var error = await Should.ThrowAsync<RegistryException>(() => client.GetBlobAsync(reference, layer, 1 << 20, Ct));

        error.Message.ShouldBe($"image {reference}: registry {StubRegistry.Host} cut blob {layer.Digest} off after 10 of {Module.Length} bytes (connection reset)");
    }

    /// <summary>An index whose first (Wasm-looking) entry is gone from the registry and whose second is the module: the
    /// second is pulled. The first's 404 used to end the pull.</summary>
    [Fact]
    public async Task GivenAnIndexWhoseFirstEntryFails_WhenPulled_ThenTheNextEntryIsTried()
    {
        var missing = StubRegistry.DigestOf("gone"u8.ToArray());
        var good = StubRegistry.Manifest(Module);
        var goodBytes = await good.Content.ReadAsByteArrayAsync(Ct);
        var goodDigest = StubRegistry.DigestOf(goodBytes);
        var index = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new ManifestDocument
        {
            MediaType = OciMediaTypes.ImageIndex,
            Manifests =
            [
                new Descriptor(OciMediaTypes.ImageManifest, missing, 100) { Platform = new Platform("wasm", "wasip1") },
                new Descriptor(OciMediaTypes.ImageManifest, goodDigest, goodBytes.Length),
            ],
        });
        using var stub = new StubRegistry((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            var path when path.EndsWith("/manifests/v1", StringComparison.Ordinal) => new HttpResponseMessage(HttpStatusCode.OK)
            {
                Content = new ByteArrayContent(index) { Headers = { ContentType = new MediaTypeHeaderValue(OciMediaTypes.ImageIndex) } },
            },
            var path when path.EndsWith(goodDigest, StringComparison.Ordinal) => new HttpResponseMessage(HttpStatusCode.OK)
            {
                Content = new ByteArrayContent(goodBytes) { Headers = { ContentType = new MediaTypeHeaderValue(OciMediaTypes.ImageManifest) } },
            },
            var path when path.Contains("/blobs/", StringComparison.Ordinal) => StubRegistry.Blob(Module),
            _ => new HttpResponseMessage(HttpStatusCode.NotFound),
        }));
        var client = Client(stub);
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/index-first-bad:v1");

        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);

        (await client.GetBlobAsync(reference, layer, 1 << 20, Ct)).ShouldBe(Module);
        stub.Count(missing).ShouldBe(1);
    }

    /// <summary>A body that gives <paramref name="first"/> and then fails as a reset connection does.</summary>
    private sealed class CutStream(byte[] first) : MemoryStream(first)
    {
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await base.ReadAsync(buffer, cancellationToken);
            return read > 0 ? read : throw new IOException("connection reset");
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    private static RegistryClient Client(StubRegistry stub, ILogger? logger = null) =>
        new(new HttpClient(stub, disposeHandler: false), new RegistryAuth(null, TimeProvider.System), _ => true, logger);
}
