using Propeller.Proxy.Configuration;
using Propeller.Proxy.Oci;

namespace Propeller.Proxy;

/// <summary><c>propeller-proxy push FILE.wasm REFERENCE</c>: pushes a module as a Wasm OCI artefact (an empty config and
/// one application/vnd.wasm.content.layer.v1+wasm layer), for the demo and for trying the proxy without other tools.
/// Credentials from PROXY_REGISTRY_USERNAME / PROXY_REGISTRY_PASSWORD when set, for PROXY_REGISTRY_URL's host only when that is set; registries over plain HTTP as the proxy decides it (PROXY_PLAIN_HTTP, loopback always).</summary>
internal static class PushCommand
{
    public const string Usage = "FILE.wasm host/repository[:tag]";

    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken) =>
        RunAsync(args, Environment.GetEnvironmentVariable, output, error, cancellationToken);

    /// <summary>As <see cref="RunAsync(string[], TextWriter, TextWriter, CancellationToken)"/>, reading the environment
    /// through <paramref name="env"/> (tests).</summary>
    internal static async Task<int> RunAsync(string[] args, Func<string, string?> env, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        if (args.Length != 2)
        {
            await error.WriteLineAsync($"usage: propeller-proxy push {Usage}");
            return 2;
        }

        if (!ImageReference.TryParse(args[1], out var reference, out var problem))
        {
            await error.WriteLineAsync($"propeller-proxy push: {problem}");
            return 2;
        }

        byte[] module;
        try
        {
            module = await File.ReadAllBytesAsync(args[0], cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            await error.WriteLineAsync($"propeller-proxy push: cannot read {args[0]}: {ex.Message}");
            return 1;
        }

        // The serving credentials are for PROXY_REGISTRY_URL's host when that is set, and RegistryAuth sends them to that
        // host only (they went to whatever host a reference named, a typo or a public registry included).
        var user = env("PROXY_REGISTRY_USERNAME")?.Trim();
        var registry = env("PROXY_REGISTRY_URL")?.Trim() is { Length: > 0 } url ? ProxySettingsLoader.HostOf(url) : null;
        var credentials = user is { Length: > 0 }
            ? new RegistryCredentials(registry ?? reference.ApiHost, user, env("PROXY_REGISTRY_PASSWORD")?.Trim(), null)
            : null;
        // Asked of RegistryAuth, which decides where they go (ghcr.io:443 is ghcr.io there; compared here as written,
        // the warning was printed for credentials that were then sent).
        var auth = new RegistryAuth(credentials, TimeProvider.System);
        if (credentials is not null && !auth.HasCredentialsFor(reference.ApiHost))
        {
            await error.WriteLineAsync($"propeller-proxy push: PROXY_REGISTRY_USERNAME is for {registry} (PROXY_REGISTRY_URL), not {reference.ApiHost}: pushing without credentials");
        }

        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        var plain = PlainHttpPolicy.Parse(env("PROXY_PLAIN_HTTP"));
        var client = new RegistryClient(http, auth, plain.Allows);
        try
        {
            var digest = await client.PushWasmAsync(reference, module, cancellationToken);
            await output.WriteLineAsync($"pushed {reference} ({module.Length} bytes, manifest {digest})");
            return 0;
        }
        catch (RegistryException ex)
        {
            await error.WriteLineAsync($"propeller-proxy push: {ex.Message}");
            return 1;
        }
    }
}
