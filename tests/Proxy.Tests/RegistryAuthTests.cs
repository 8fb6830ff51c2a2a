using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Tests;

/// <summary>Our client's answers to 401s where the real registries cannot produce the condition: concurrent first pulls
/// challenged together (a barrier in a <see cref="StubRegistry"/>), a token that expires before its retry.</summary>
public sealed class RegistryAuthTests
{
    private static readonly byte[] Module = Modules.Addition;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenABasicAuthRegistry_WhenTwoFirstPullsAreChallengedTogether_ThenBothAreRetriedWithTheCredentials()
    {
        // Before: the second 401 found the host already marked as wanting Basic and was not retried ("not authorized").
        var basic = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("user:secret"));
        var unauthenticated = 0;
        var both = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stub = new StubRegistry(async (request, ct) =>
        {
            if (request.Headers.Authorization is null)
            {
                if (Interlocked.Increment(ref unauthenticated) == 2)
                {
                    both.SetResult();
                }

                await both.Task.WaitAsync(ct); // both requests went out without credentials
                return StubRegistry.Challenge("Basic realm=\"stub\"");
            }

            return request.Headers.Authorization.ToString() == basic ? StubRegistry.Manifest(Module) : StubRegistry.Challenge("Basic realm=\"stub\"");
        });
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(new RegistryCredentials(StubRegistry.Host, "user", "secret", null), TimeProvider.System), _ => true);
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/basic:v1");

        var layers = await Task.WhenAll(client.ResolveLayerAsync(reference, 1 << 20, Ct), client.ResolveLayerAsync(reference, 1 << 20, Ct));

        layers.ShouldAllBe(l => l.Digest == StubRegistry.DigestOf(Module));
        stub.Requests.Count(r => r.EndsWith(basic, StringComparison.Ordinal)).ShouldBe(2, string.Join('\n', stub.Requests));
    }

    /// <summary>PROXY_REGISTRY_URL naming Docker Hub as users write it (<c>docker.io</c>, <c>https://index.docker.io/v1/</c>):
    /// its credentials go to the host that serves its API (registry-1.docker.io). Before, they were kept for the name as
    /// written and never matched, so a private Docker Hub image was pulled anonymously and refused.</summary>
    [Theory]
    [InlineData("docker.io")]
    [InlineData("index.docker.io")]
    public async Task GivenDockerHubCredentials_WhenAnImageOnDockerHubIsPulled_ThenTheyAreSent(string registry)
    {
        var basic = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("user:secret"));
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.RequestUri!.Host == "registry-1.docker.io" && request.Headers.Authorization?.ToString() == basic
                ? StubRegistry.Manifest(Module)
                : StubRegistry.Challenge("Basic realm=\"hub\"")));
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(new RegistryCredentials(registry, "user", "secret", null), TimeProvider.System), _ => true);

        var layer = await client.ResolveLayerAsync(ImageReference.Parse("docker.io/acme/private:v1"), 1 << 20, Ct);

        layer.Digest.ShouldBe(StubRegistry.DigestOf(Module));
    }

    [Fact]
    public async Task GivenABearerToken_WhenItExpiresBeforeTheRetry_ThenTheRetryStillCarriesTheTokenFetchedForIt()
    {
        // The retry used to look the token up again in the shared cache, where it may be gone by then: expired (here: the
        // clock moves a second at every reading and the token lives one), or removed by another request's 401 (the
        // concurrent case, a window between two statements that no test can hold open).
        var clock = new SteppingClock { Step = TimeSpan.FromSeconds(1) };
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.RequestUri!.AbsolutePath == "/token" ? Json("""{"token":"t1","expires_in":1}""")
            : request.Headers.Authorization?.ToString() == "Bearer t1" ? StubRegistry.Manifest(Module)
            : StubRegistry.Challenge($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"")));
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(null, clock), _ => true);

        var layer = await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/bearer:v1"), 1 << 20, Ct);

        layer.Digest.ShouldBe(StubRegistry.DigestOf(Module));
        stub.Requests.ShouldBe(["GET /v2/test/bearer/manifests/v1 ", "GET /token ", "GET /v2/test/bearer/manifests/v1 Bearer t1"]);
    }

    [Fact]
    public async Task GivenABearerRegistry_WhenTwoFirstPullsAreChallengedTogether_ThenBothSucceed()
    {
        var unauthenticated = 0;
        var issued = 0;
        var both = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stub = new StubRegistry(async (request, ct) =>
        {
            if (request.RequestUri!.AbsolutePath == "/token")
            {
                return Json($$"""{"token":"t{{Interlocked.Increment(ref issued)}}","expires_in":300}""");
            }

            if (request.Headers.Authorization is null)
            {
                if (Interlocked.Increment(ref unauthenticated) == 2)
                {
                    both.SetResult();
                }

                await both.Task.WaitAsync(ct);
            }

            return request.Headers.Authorization is { Scheme: "Bearer" } ? StubRegistry.Manifest(Module)
                : StubRegistry.Challenge($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"");
        });
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(null, TimeProvider.System), _ => true);
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/bearer2:v1");

        var layers = await Task.WhenAll(client.ResolveLayerAsync(reference, 1 << 20, Ct), client.ResolveLayerAsync(reference, 1 << 20, Ct));

        layers.ShouldAllBe(l => l.Digest == StubRegistry.DigestOf(Module));
        issued.ShouldBeInRange(1, 2);
    }

    [Fact]
    public async Task GivenTokensForManyRepositories_WhenTheyHaveExpired_ThenTheyAreDroppedAsTheNextIsCached()
    {
        var clock = new SteppingClock();
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.RequestUri!.AbsolutePath == "/token" ? Json("""{"token":"t","expires_in":60}""")
            : request.Headers.Authorization is { Scheme: "Bearer" } ? StubRegistry.Manifest(Module)
            : StubRegistry.Challenge($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"")));
        using var http = new HttpClient(stub);
        var auth = new RegistryAuth(null, clock);
        var client = new RegistryClient(http, auth, _ => true);

        for (var i = 0; i < 3; i++)
        {
            await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/many-{i}:v1"), 1 << 20, Ct);
        }

        auth.CachedTokens.ShouldBe(3);
        clock.Advance(TimeSpan.FromMinutes(2));
        await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/many-3:v1"), 1 << 20, Ct);

        auth.CachedTokens.ShouldBe(1, "the three expired tokens were dropped when the fourth was cached");
    }

    private static HttpResponseMessage Json(string json) => new(HttpStatusCode.OK) { Content = new StringContent(json, Encoding.UTF8, new MediaTypeHeaderValue("application/json")) };
}
