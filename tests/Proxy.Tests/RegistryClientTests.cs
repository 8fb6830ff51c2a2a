using System.Security.Cryptography;
using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Tests;

/// <summary>Our OCI client against the real distribution registry (anonymous and basic auth); every artefact is pushed
/// by the test through the distribution API.</summary>
public sealed class RegistryClientTests : IDisposable
{
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };

    public void Dispose() => _http.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAPushedWasmModule_WhenPulledByTag_ThenTheBytesComeBackVerified()
    {
        var client = TestRegistry.Client(_http);
        var reference = ImageReference.Parse($"{TestRegistry.Anonymous}/{TestRegistry.Repository("add")}:v1");
        await client.PushWasmAsync(reference, Modules.Addition, Ct);

        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);
        var bytes = await client.GetBlobAsync(reference, layer, 1 << 20, Ct);

        layer.MediaType.ShouldBe(OciMediaTypes.WasmLayer);
        bytes.ShouldBe(Modules.Addition);
        layer.Digest.ShouldBe("sha256:" + Convert.ToHexStringLower(SHA256.HashData(Modules.Addition)));
    }

    [Fact]
    public async Task GivenTwoTags_WhenEachIsPulled_ThenEachGivesItsOwnModule()
    {
        // The original always pulled "latest" whatever the reference said (spec §3.5, quirk fixed).
        var client = TestRegistry.Client(_http);
        var repository = $"{TestRegistry.Anonymous}/{TestRegistry.Repository("tags")}";
        byte[] v1 = [0, 97, 115, 109, 1, 0, 0, 0], latest = [0, 97, 115, 109, 1, 0, 0, 0, 0, 4, 110, 97, 109, 101];
        await client.PushWasmAsync(ImageReference.Parse(repository + ":v1"), v1, Ct);
        var latestDigest = await client.PushWasmAsync(ImageReference.Parse(repository + ":latest"), latest, Ct);

        (await PullAsync(client, repository + ":v1")).ShouldBe(v1);
        (await PullAsync(client, repository)).ShouldBe(latest);
        (await PullAsync(client, $"{repository}@{latestDigest}")).ShouldBe(latest);
    }

    [Fact]
    public async Task GivenAnIndexWithALinuxImageAndAWasmArtefact_WhenPulled_ThenTheWasmArtefactIsPicked()
    {
        var client = TestRegistry.Client(_http);
        var repository = $"{TestRegistry.Anonymous}/{TestRegistry.Repository("index")}";
        var (linux, _) = await PushImageAsync(client, repository, "linux", "application/vnd.oci.image.layer.v1.tar+gzip", new byte[300]);
        var wasmDigest = await client.PushWasmAsync(ImageReference.Parse(repository + ":wasm"), Modules.Addition, Ct);
        var wasmSize = await ManifestSizeAsync(repository, wasmDigest);
        await client.PushManifestAsync(
            ImageReference.Parse(repository + ":multi"),
            new ManifestDocument
            {
                MediaType = OciMediaTypes.ImageIndex,
                Manifests = [linux with { Platform = new Platform("amd64", "linux") }, new Descriptor(OciMediaTypes.ImageManifest, wasmDigest, wasmSize)],
            },
            Ct);

        (await PullAsync(client, repository + ":multi")).ShouldBe(Modules.Addition);
    }

    [Fact]
    public async Task GivenAnIndexWithoutAWasmArtefact_WhenPulled_ThenTheErrorSaysSo()
    {
        var client = TestRegistry.Client(_http);
        var repository = $"{TestRegistry.Anonymous}/{TestRegistry.Repository("nowasm")}";
        var (linux, _) = await PushImageAsync(client, repository, "linux", "application/vnd.oci.image.layer.v1.tar+gzip", new byte[100]);
        await client.PushManifestAsync(
            ImageReference.Parse(repository + ":multi"),
            new ManifestDocument { MediaType = OciMediaTypes.ImageIndex, Manifests = [linux with { Platform = new Platform("arm64", "linux") }] },
            Ct);

        var error = await Should.ThrowAsync<RegistryException>(() => PullAsync(client, repository + ":multi"));

        error.Message.ShouldBe($"image {repository}:multi is an index without a Wasm artefact (its manifests: linux/arm64); push the module with a {OciMediaTypes.WasmLayer} layer");
    }

    [Fact]
    public async Task GivenAnImageWithoutAWasmMediaType_WhenPulled_ThenTheLargestLayerIsTakenAsTheOriginalDid()
    {
        var client = TestRegistry.Client(_http);
        var repository = $"{TestRegistry.Anonymous}/{TestRegistry.Repository("plain")}";
        var small = "{}"u8.ToArray();
        var smallDigest = await client.PushBlobAsync(ImageReference.Parse(repository), small, Ct);
        await PushImageAsync(client, repository, "v1", "application/octet-stream", Modules.Addition, new Descriptor("application/octet-stream", smallDigest, small.Length));

        (await PullAsync(client, repository + ":v1")).ShouldBe(Modules.Addition);
    }

    [Fact]
    public async Task GivenAnUnknownTagOrRepository_WhenPulled_ThenTheErrorNamesIt()
    {
        var client = TestRegistry.Client(_http);
        var repository = $"{TestRegistry.Anonymous}/{TestRegistry.Repository("known")}";
        await client.PushWasmAsync(ImageReference.Parse(repository + ":v1"), Modules.Addition, Ct);

        (await Should.ThrowAsync<RegistryException>(() => PullAsync(client, repository + ":v2"))).Message
            .ShouldStartWith($"image {repository}:v2: tag v2 not found in {TestRegistry.Anonymous}/");
        (await Should.ThrowAsync<RegistryException>(() => PullAsync(client, $"{TestRegistry.Anonymous}/test/never-pushed:v1"))).Message
            .ShouldContain("not found");
    }

    [Fact]
    public async Task GivenAnArtefactOverTheLimit_WhenResolved_ThenItIsRefusedBeforeDownloading()
    {
        var client = TestRegistry.Client(_http);
        var reference = ImageReference.Parse($"{TestRegistry.Anonymous}/{TestRegistry.Repository("big")}:v1");
        await client.PushWasmAsync(reference, new byte[4096], Ct);

        var error = await Should.ThrowAsync<RegistryException>(() => client.ResolveLayerAsync(reference, 1000, Ct));

        error.Message.ShouldBe($"image {reference}: the artefact is 4096 bytes, over the proxy's limit of 1000 bytes (PROXY_MAX_ARTIFACT_BYTES)");
    }

    [Fact]
    public async Task GivenABlobCorruptedInTheRegistrysStorage_WhenPulled_ThenDigestVerificationFails()
    {
        var client = TestRegistry.Client(_http);
        var module = RandomNumberGenerator.GetBytes(1000);
        var reference = ImageReference.Parse($"{TestRegistry.Anonymous}/{TestRegistry.Repository("corrupt")}:v1");
        await client.PushWasmAsync(reference, module, Ct);
        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);
        var hex = layer.Digest["sha256:".Length..];
        var file = Path.Combine(TestRegistry.StorageDirectory, "docker", "registry", "v2", "blobs", "sha256", hex[..2], hex, "data");
        var stored = await File.ReadAllBytesAsync(file, Ct);
        stored[500] ^= 0xFF; // bit rot on the registry's disk: same size, other bytes
        await File.WriteAllBytesAsync(file, stored, Ct);

        var error = await Should.ThrowAsync<RegistryException>(() => client.GetBlobAsync(reference, layer, 1 << 20, Ct));

        error.Message.ShouldBe($"image {reference}: blob {layer.Digest} failed verification (its bytes hash to sha256:{Convert.ToHexStringLower(SHA256.HashData(stored))})");
        var wrongSize = layer with { Size = layer.Size + 1 };
        (await Should.ThrowAsync<RegistryException>(() => client.GetBlobAsync(reference, wrongSize, 1 << 20, Ct))).Message
            .ShouldContain("is not the 1001 bytes its manifest says");
    }

    [Fact]
    public async Task GivenTheBasicAuthRegistry_WhenPushedAndPulledWithCredentials_ThenItWorks()
    {
        var client = TestRegistry.Client(_http, TestRegistry.Credentials());
        var reference = ImageReference.Parse($"{TestRegistry.WithAuth}/{TestRegistry.Repository("auth")}:v1");
        await client.PushWasmAsync(reference, Modules.Addition, Ct);

        (await PullAsync(client, reference.ToString())).ShouldBe(Modules.Addition);
    }

    [Fact]
    public async Task GivenTheBasicAuthRegistry_WhenPulledWithoutOrWithWrongCredentials_ThenTheErrorSaysNotAuthorized()
    {
        var reference = $"{TestRegistry.WithAuth}/{TestRegistry.Repository("denied")}:v1";

        (await Should.ThrowAsync<RegistryException>(() => PullAsync(TestRegistry.Client(_http), reference))).Message
            .ShouldBe($"image {reference}: not authorized (HTTP 401 Unauthorized, UNAUTHORIZED: authentication required); check PROXY_AUTHENTICATE, PROXY_REGISTRY_URL and the credentials");
        (await Should.ThrowAsync<RegistryException>(() => PullAsync(TestRegistry.Client(_http, TestRegistry.Credentials("wrong")), reference))).Message
            .ShouldContain("not authorized");
    }

    [Fact]
    public async Task GivenNoRegistryListening_WhenPulled_ThenTheErrorSaysUnreachable()
    {
        var error = await Should.ThrowAsync<RegistryException>(() => PullAsync(TestRegistry.Client(_http), "127.0.0.1:1/test/none:v1"));

        error.Message.ShouldStartWith("image 127.0.0.1:1/test/none:v1: registry 127.0.0.1:1 is unreachable");
    }

    private static async Task<byte[]> PullAsync(RegistryClient client, string text)
    {
        var reference = ImageReference.Parse(text);
        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);
        return await client.GetBlobAsync(reference, layer, 1 << 20, Ct);
    }

    /// <summary>An image manifest with one layer of <paramref name="layerType"/> (plus <paramref name="extra"/>) under
    /// <paramref name="tag"/>; returns its descriptor.</summary>
    private static async Task<(Descriptor Manifest, string LayerDigest)> PushImageAsync(RegistryClient client, string repository, string tag, string layerType, byte[] layer, Descriptor? extra = null)
    {
        var reference = ImageReference.Parse($"{repository}:{tag}");
        var config = "{\"architecture\":\"amd64\",\"os\":\"linux\"}"u8.ToArray();
        var configDigest = await client.PushBlobAsync(reference, config, Ct);
        var layerDigest = await client.PushBlobAsync(reference, layer, Ct);
        var manifest = new ManifestDocument
        {
            MediaType = OciMediaTypes.ImageManifest,
            Config = new Descriptor("application/vnd.oci.image.config.v1+json", configDigest, config.Length),
            Layers = extra is null ? [new Descriptor(layerType, layerDigest, layer.Length)] : [extra, new Descriptor(layerType, layerDigest, layer.Length)],
        };
        var digest = await client.PushManifestAsync(reference, manifest, Ct);
        return (new Descriptor(OciMediaTypes.ImageManifest, digest, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(manifest).Length), layerDigest);
    }

    private async Task<long> ManifestSizeAsync(string repository, string digest)
    {
        using var request = new HttpRequestMessage(HttpMethod.Head, $"http://{repository[..repository.IndexOf('/', StringComparison.Ordinal)]}/v2/{repository[(repository.IndexOf('/', StringComparison.Ordinal) + 1)..]}/manifests/{digest}");
        request.Headers.Accept.ParseAdd(OciMediaTypes.ImageManifest);
        using var response = await _http.SendAsync(request, Ct);
        response.EnsureSuccessStatusCode();
        return response.Content.Headers.ContentLength ?? throw new InvalidOperationException("no length");
    }
}
