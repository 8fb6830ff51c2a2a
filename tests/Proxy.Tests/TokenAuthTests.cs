using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Tests;

/// <summary>Our client in the distribution token flow: the real registry with token auth, our token service
/// (<see cref="TokenService"/>) as its realm.</summary>
public sealed class TokenAuthTests : IDisposable
{
    private readonly TokenService _tokens = new();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };

    public void Dispose()
    {
        _http.Dispose();
        _tokens.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenCredentials_WhenPushingAndPulling_ThenTokensAreFetchedWithThemAndCachedPerScope()
    {
        var client = new RegistryClient(_http, new RegistryAuth(new RegistryCredentials(TokenService.Registry, TestRegistry.User, TestRegistry.Password, null), TimeProvider.System), _ => true);
        var reference = ImageReference.Parse($"{TokenService.Registry}/{TestRegistry.Repository("tok")}:v1");
        await client.PushWasmAsync(reference, Modules.Addition, Ct);
        var afterPush = _tokens.Issued;

        var layer = await client.ResolveLayerAsync(reference, 1 << 20, Ct);
        (await client.GetBlobAsync(reference, layer, 1 << 20, Ct)).ShouldBe(Modules.Addition);
        (await client.GetBlobAsync(reference, layer, 1 << 20, Ct)).ShouldBe(Modules.Addition);

        afterPush.ShouldBe(1); // one push scope token for every push request
        _tokens.Issued.ShouldBe(2); // and one pull scope token for every pull request
    }

    [Fact]
    public async Task GivenNoCredentials_WhenPullingAPublicRepository_ThenAnAnonymousTokenWorks()
    {
        var pusher = new RegistryClient(_http, new RegistryAuth(new RegistryCredentials(TokenService.Registry, TestRegistry.User, TestRegistry.Password, null), TimeProvider.System), _ => true);
        var reference = ImageReference.Parse($"{TokenService.Registry}/{TestRegistry.Repository("pub")}:v1");
        await pusher.PushWasmAsync(reference, Modules.Addition, Ct);
        var anonymous = new RegistryClient(_http, new RegistryAuth(null, TimeProvider.System), _ => true);

        var layer = await anonymous.ResolveLayerAsync(reference, 1 << 20, Ct);

        (await anonymous.GetBlobAsync(reference, layer, 1 << 20, Ct)).ShouldBe(Modules.Addition);
    }

    [Fact]
    public async Task GivenNoCredentials_WhenTheTokenServiceRefuses_ThenTheErrorNamesIt()
    {
        var anonymous = new RegistryClient(_http, new RegistryAuth(null, TimeProvider.System), _ => true);
        var reference = ImageReference.Parse($"{TokenService.Registry}/test/private-{Guid.NewGuid():N}:v1");

        var error = await Should.ThrowAsync<RegistryException>(() => anonymous.ResolveLayerAsync(reference, 1 << 20, Ct));

        error.Message.ShouldStartWith($"the token service http://127.0.0.1:");
        error.Message.ShouldContain($"of registry {TokenService.Registry} refused a token for repository:{reference.Repository}:pull: HTTP 401");
    }
}
