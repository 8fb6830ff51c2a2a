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

    /// <summary>An expires_in of 68 years was taken as it was: every repository's token stayed cached for the proxy's
    /// life. A token is cached for an hour at most.</summary>
    [Fact]
    public async Task GivenTokensThatClaimToLastForDecades_WhenTwoHoursHavePassed_ThenTheyAreDroppedAsTheNextIsCached()
    {
        var clock = new SteppingClock();
        using var stub = AnonymousTokenRegistry("""{"token":"t","expires_in":2147483647}""");
        using var http = new HttpClient(stub);
        var auth = new RegistryAuth(null, clock);
        var client = new RegistryClient(http, auth, _ => true);

        for (var i = 0; i < 3; i++)
        {
            await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/decades-{i}:v1"), 1 << 20, Ct);
        }

        clock.Advance(TimeSpan.FromHours(2));
        await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/decades-3:v1"), 1 << 20, Ct);

        auth.CachedTokens.ShouldBe(1);
    }

    /// <summary>Any host's anonymous Bearer challenge is answered: the cache holds at most 1,000 tokens, the one that
    /// expires soonest making room.</summary>
    [Fact]
    public async Task GivenMoreRepositoriesThanTheTokenCacheHolds_WhenEachIsPulled_ThenTheCacheStaysAtItsLimit()
    {
        var clock = new SteppingClock { Step = TimeSpan.FromMilliseconds(1) }; // every token expires a little later than the one before
        using var stub = AnonymousTokenRegistry("""{"token":"t","expires_in":300}""");
        using var http = new HttpClient(stub);
        var auth = new RegistryAuth(null, clock);
        var client = new RegistryClient(http, auth, _ => true);

        for (var i = 0; i <= RegistryAuth.MaxCachedTokens; i++)
        {
            await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/bounded-{i}:v1"), 1 << 20, Ct);
        }

        auth.CachedTokens.ShouldBe(RegistryAuth.MaxCachedTokens);
        var before = stub.Count("/token");
        await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/bounded-{RegistryAuth.MaxCachedTokens}:v1"), 1 << 20, Ct);
        stub.Count("/token").ShouldBe(before, "the newest token is cached");
    }

    /// <summary>A token of up to 1 MiB was cached like any other: one longer than 16 KiB is used, not kept.</summary>
    [Fact]
    public async Task GivenATokenOverTheCachedLength_WhenAPullIsChallenged_ThenItIsUsedButNotCached()
    {
        var token = new string('t', RegistryAuth.MaxCachedTokenLength + 1);
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.RequestUri!.AbsolutePath == "/token" ? Json($$"""{"token":"{{token}}","expires_in":300}""")
            : request.Headers.Authorization?.ToString() == "Bearer " + token ? StubRegistry.Manifest(Module)
            : StubRegistry.Challenge($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"")));
        using var http = new HttpClient(stub);
        var auth = new RegistryAuth(null, TimeProvider.System);
        var client = new RegistryClient(http, auth, _ => true);

        var layer = await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/long-token:v1"), 1 << 20, Ct);

        layer.Digest.ShouldBe(StubRegistry.DigestOf(Module));
        auth.CachedTokens.ShouldBe(0);
    }

    /// <summary>A registry that challenges for an anonymous token from its <c>/token</c>, answered with <paramref name="answer"/>.</summary>
    private static StubRegistry AnonymousTokenRegistry(string answer) => new((request, _) => Task.FromResult(
        request.RequestUri!.AbsolutePath == "/token" ? Json(answer)
        : request.Headers.Authorization is { Scheme: "Bearer" } ? StubRegistry.Manifest(Module)
        : StubRegistry.Challenge($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"")));

    /// <summary>Spec §3.5: with the username and password set, the original uses them, and the token only when they are
    /// not both set. The static token used to be sent as soon as it was set; this registry refuses it.</summary>
    [Fact]
    public async Task GivenUsernamePasswordAndAStaticToken_WhenATokenRegistryChallenges_ThenTheRealmGetsThemAndTheBlobItsToken()
    {
        var basic = BasicOf("user", "secret");
        using var stub = TokenRegistry(
            $"Bearer realm=\"https://{StubRegistry.Host}/token\",service=\"stub\"",
            request => request.Headers.Authorization?.ToString() == basic ? Json("""{"token":"issued","expires_in":300}""") : new HttpResponseMessage(HttpStatusCode.Unauthorized));
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(new RegistryCredentials(StubRegistry.Host, "user", "secret", "static"), TimeProvider.System), _ => true);
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/all-three:v1");

        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);
        var blob = await client.GetBlobAsync(reference, layer, 1 << 20, Ct);

        blob.ShouldBe(Module);
        stub.Requests.ShouldContain($"GET /token {basic}");
        stub.Requests.ShouldContain($"GET /v2/test/all-three/blobs/{layer.Digest} Bearer issued");
        stub.Requests.ShouldNotContain(r => r.EndsWith("Bearer static", StringComparison.Ordinal));
    }

    /// <summary>Only the token: it is the bearer token itself, no realm asked.</summary>
    [Fact]
    public async Task GivenOnlyAStaticToken_WhenATokenRegistryChallenges_ThenItIsSentAsTheBearerToken()
    {
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.Headers.Authorization?.ToString() == "Bearer static" ? StubRegistry.Manifest(Module)
            : StubRegistry.Challenge($"Bearer realm=\"https://{StubRegistry.Host}/token\"")));
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(new RegistryCredentials(StubRegistry.Host, "user", null, "static"), TimeProvider.System), _ => true);

        var layer = await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/token-only:v1"), 1 << 20, Ct);

        layer.Digest.ShouldBe(StubRegistry.DigestOf(Module));
        stub.Count("/token").ShouldBe(0);
    }

    /// <summary>A 401 offering Basic and Bearer, without credentials: the Bearer challenge is answered with an anonymous
    /// token. Before, the Basic one ended the answer (nothing to send) and the pull was "not authorized".</summary>
    [Fact]
    public async Task GivenBasicAndBearerChallengesAndNoCredentials_WhenPulled_ThenAnAnonymousTokenIsFetched()
    {
        using var stub = new StubRegistry((request, _) =>
        {
            if (request.RequestUri!.AbsolutePath == "/token")
            {
                return Task.FromResult(Json("""{"token":"anon","expires_in":300}"""));
            }

            if (request.Headers.Authorization?.ToString() == "Bearer anon")
            {
                return Task.FromResult(StubRegistry.Manifest(Module));
            }

            var challenge = StubRegistry.Challenge("Basic realm=\"x\"");
            challenge.Headers.TryAddWithoutValidation("WWW-Authenticate", $"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"");
            return Task.FromResult(challenge);
        });
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(null, TimeProvider.System), _ => true);

        var layer = await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/two-challenges:v1"), 1 << 20, Ct);

        layer.Digest.ShouldBe(StubRegistry.DigestOf(Module));
    }

    /// <summary>The token service answering 503 once: its GET is retried as the registry's are. Before, the pull failed
    /// at once ("refused a token ... HTTP 503").</summary>
    [Fact]
    public async Task GivenATokenServiceAnswering503Once_WhenPulled_ThenTheTokenIsAskedAgainAndThePullSucceeds()
    {
        var realmCalls = 0;
        using var stub = TokenRegistry(
            $"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"",
            _ => Interlocked.Increment(ref realmCalls) == 1 ? new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) : Json("""{"token":"issued","expires_in":300}"""));
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(null, TimeProvider.System), _ => true);
        var reference = ImageReference.Parse($"{StubRegistry.Host}/test/realm-503:v1");

        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);

        (await client.GetBlobAsync(reference, layer, 1 << 20, Ct)).ShouldBe(Module);
        stub.Count("/token").ShouldBe(2);
    }

    /// <summary>A realm that is not http or https is refused as unusable; an ftp:// one was sent (by the real handler:
    /// NotSupportedException, an "unexpected proxy error").</summary>
    [Fact]
    public async Task GivenARealmThatIsNotHttp_WhenChallenged_ThenThePullFailsSayingTheRealmIsNotUsable()
    {
        using var stub = TokenRegistry("Bearer realm=\"ftp://registry.stub/token\"", _ => Json("""{"token":"issued","expires_in":300}"""));
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(null, TimeProvider.System), _ => true);

        var error = await Should.ThrowAsync<RegistryException>(() => client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/ftp-realm:v1"), 1 << 20, Ct));

        error.Message.ShouldBe($"registry {StubRegistry.Host} asked for a bearer token without a usable realm ('realm=\"ftp://registry.stub/token\"')");
    }

    /// <summary>An https registry naming a plain-http realm on another machine: the username and password are not sent
    /// there (anonymous token request). They were, because the registry itself was https.</summary>
    [Fact]
    public async Task GivenAnHttpsRegistryWithAPlainHttpRealm_WhenATokenIsFetched_ThenTheCredentialsAreNotSentToIt()
    {
        using var stub = TokenRegistry($"Bearer realm=\"http://{StubRegistry.Host}/token\",service=\"stub\"", _ => Json("""{"token":"issued","expires_in":300}"""));
        using var http = new HttpClient(stub);
        var client = new RegistryClient(http, new RegistryAuth(new RegistryCredentials(StubRegistry.Host, "user", "secret", null), TimeProvider.System), _ => false);

        await client.ResolveLayerAsync(ImageReference.Parse($"{StubRegistry.Host}/test/http-realm:v1"), 1 << 20, Ct);

        stub.Requests.ShouldContain("GET /token ");
        stub.Requests.ShouldNotContain(r => r.Contains("Basic", StringComparison.Ordinal));
    }

    /// <summary>PROXY_REGISTRY_URL with the https port written out, or an image naming it: the credentials are for the
    /// host either way. "https://ghcr.io:443" was kept as ghcr.io:443 and never matched ghcr.io.</summary>
    [Theory]
    [InlineData("https://ghcr.io:443", "ghcr.io/acme/private:v1")]
    [InlineData("ghcr.io", "ghcr.io:443/acme/private:v1")]
    public async Task GivenCredentialsForAHostWithTheHttpsPortWrittenOut_WhenItsImageIsPulled_ThenTheyAreSent(string registryUrl, string image)
    {
        var basic = BasicOf("user", "secret");
        using var stub = new StubRegistry((request, _) => Task.FromResult(
            request.Headers.Authorization?.ToString() == basic ? StubRegistry.Manifest(Module) : StubRegistry.Challenge("Basic realm=\"ghcr\"")));
        using var http = new HttpClient(stub);
        var credentials = new RegistryCredentials(Propeller.Proxy.Configuration.ProxySettingsLoader.HostOf(registryUrl), "user", "secret", null);
        var client = new RegistryClient(http, new RegistryAuth(credentials, TimeProvider.System), _ => false);

        var layer = await client.ResolveLayerAsync(ImageReference.Parse(image), 1 << 20, Ct);

        layer.Digest.ShouldBe(StubRegistry.DigestOf(Module));
    }

    /// <summary>A registry that wants a bearer token from <paramref name="challenge"/>'s realm (any path ending
    /// <c>/token</c>, answered by <paramref name="realm"/>) and serves the manifest and blob to <c>Bearer issued</c> or
    /// <c>Bearer anon</c>.</summary>
    private static StubRegistry TokenRegistry(string challenge, Func<HttpRequestMessage, HttpResponseMessage> realm) => new((request, _) => Task.FromResult(
        request.RequestUri!.AbsolutePath == "/token" ? realm(request)
        : request.Headers.Authorization?.ToString() is not ("Bearer issued" or "Bearer anon") ? StubRegistry.Challenge(challenge)
        : request.RequestUri.AbsolutePath.Contains("/blobs/", StringComparison.Ordinal) ? StubRegistry.Blob(Module)
        : StubRegistry.Manifest(Module)));

    private static string BasicOf(string user, string password) => "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"));

    private static HttpResponseMessage Json(string json) => new(HttpStatusCode.OK) { Content = new StringContent(json, Encoding.UTF8, new MediaTypeHeaderValue("application/json")) };
}
