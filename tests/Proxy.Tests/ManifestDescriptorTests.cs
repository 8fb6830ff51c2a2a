using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Tests;

/// <summary>Manifests whose layer descriptor is unusable, served by a <see cref="StubRegistry"/> (the real registry
/// refuses to store them).</summary>
public sealed class ManifestDescriptorTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(null, 8, "layer 0 of the manifest has no digest")]
    [InlineData("sha256:abc", 8, "layer 0 of the manifest has an invalid digest 'sha256:abc' (expected sha256: and 64 hex digits, or sha512: and 128)")]
    [InlineData("../../blobs/x", 8, "layer 0 of the manifest has an invalid digest '../../blobs/x'")]
    [InlineData("sha256:0000000000000000000000000000000000000000000000000000000000000000?x", 8, "has an invalid digest")]
    [InlineData("", -1, "layer 0 of the manifest has a negative size (-1)")]
    public async Task GivenALayerWithoutAUsableDigestOrSize_WhenResolved_ThenTheErrorSaysWhich(string? digest, long size, string reason)
    {
        using var stub = new StubRegistry((_, _) => Task.FromResult(StubRegistry.Manifest(Modules.Addition, digest, size)));
        using var http = new HttpClient(stub);
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/bad-layer:v1");

        var error = await Should.ThrowAsync<RegistryException>(() => new RegistryClient(http, new RegistryAuth(null, TimeProvider.System), _ => true).ResolveLayerAsync(reference, 1 << 20, Ct));

        error.Message.ShouldStartWith($"image {reference}: ");
        error.Message.ShouldContain(reason);
        stub.Requests.Count.ShouldBe(1); // nothing fetched by it
    }
}
