namespace Propeller.Proxy.Tests;

/// <summary><c>propeller-proxy push</c>'s handling of the credentials' host.</summary>
public sealed class PushCommandTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>PROXY_REGISTRY_URL given as host:443 names the host the image names without a port: RegistryAuth sends
    /// the credentials there, and the command warned "pushing without credentials" all the same. The registry here is
    /// loopback (nothing listens, so the push itself fails at once); ghcr.io:443 and ghcr.io/acme/x are the same case.</summary>
    [Fact]
    public async Task GivenARegistryUrlWithTheHttpsPort_WhenPushingToThatHostWithoutAPort_ThenNoWarningSaysTheCredentialsAreUnused() =>
        (await PushErrorsAsync("127.0.0.1:443", "127.0.0.1/acme/x:v1")).ShouldNotContain("pushing without credentials");

    [Fact]
    public async Task GivenARegistryUrlForAnotherHost_WhenPushing_ThenTheWarningSaysTheCredentialsAreUnused() =>
        (await PushErrorsAsync("127.0.0.2:443", "127.0.0.1/acme/x:v1"))
            .ShouldContain("PROXY_REGISTRY_USERNAME is for 127.0.0.2:443 (PROXY_REGISTRY_URL), not 127.0.0.1: pushing without credentials");

    /// <summary>What <c>push</c> writes to stderr pushing a module to <paramref name="reference"/> with credentials for
    /// <paramref name="registryUrl"/>.</summary>
    private static async Task<string> PushErrorsAsync(string registryUrl, string reference)
    {
        var file = Path.GetTempFileName();
        await File.WriteAllBytesAsync(file, Modules.Addition, Ct);
        var env = new Dictionary<string, string> { ["PROXY_REGISTRY_URL"] = registryUrl, ["PROXY_REGISTRY_USERNAME"] = "user", ["PROXY_REGISTRY_PASSWORD"] = "secret" };
        using var output = new StringWriter();
        using var error = new StringWriter();
        try
        {
            await PushCommand.RunAsync([file, reference], name => env.GetValueOrDefault(name), output, error, Ct);
        }
        finally
        {
            File.Delete(file);
        }

        return error.ToString();
    }
}
