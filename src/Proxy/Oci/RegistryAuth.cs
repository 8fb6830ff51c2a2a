using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Propeller.Proxy.Oci;

/// <summary>
/// The registry's authentication (the distribution spec's flow, as oras-go does it): a request goes out with what is
/// known for its host (a cached bearer token for its scope, or basic credentials once the host asked for them); on a
/// 401 the <c>WWW-Authenticate</c> challenge decides: <c>Basic</c> → the static username and password; <c>Bearer
/// realm,service,scope</c> → a token from the realm (anonymously, or with the username and password), cached by host
/// and scope until it expires (at most an hour; expired ones are dropped as others are cached, at most 1,000 are kept, a
/// token over 16 KiB is used but not cached); a static token (PROXY_REGISTRY_TOKEN) is
/// sent as the bearer token itself, unless the username and password are both set (spec §3.5: the original uses them
/// then, the token only otherwise). Basic credentials go to a realm over https or on loopback only. The realm's GET is
/// retried as the registry's are (<c>send</c>: the client's transient retry).
/// Credentials go only to the host they are for. The answer to a 401 is the Authorization its request is retried with,
/// not a look-up of the shared state: requests that were challenged at once (the first pulls from a host) each get
/// theirs, whatever the others learnt or replaced meanwhile.
/// </summary>
public sealed class RegistryAuth(RegistryCredentials? credentials, TimeProvider time)
{
    /// <summary>The most of a token service's answer read.</summary>
    private const long MaxTokenAnswerBytes = 1 << 20;

    /// <summary>The most tokens cached; one more drops the one that expires soonest. Any host's anonymous Bearer challenge
    /// is answered (an image names its registry), so the cache's keys are the requests' to choose.</summary>
    internal const int MaxCachedTokens = 1000;

    /// <summary>The longest token cached (a token is a few KiB); a longer one is used for its request but not kept, so
    /// the cache holds at most <see cref="MaxCachedTokens"/> × 16 KiB.</summary>
    internal const int MaxCachedTokenLength = 16 << 10;

    /// <summary>The longest a token is cached, whatever its <c>expires_in</c> says (up to 68 years were taken).</summary>
    internal static readonly TimeSpan MaxTokenLifetime = TimeSpan.FromHours(1);

    /// <summary>The API host the credentials are for: PROXY_REGISTRY_URL's Docker Hub names (docker.io, index.docker.io)
    /// are served by registry-1.docker.io, the host requests go to (they never matched before).</summary>
    private readonly string? _credentialsHost = credentials is null ? null : WithoutHttpsPort(ImageReference.ApiHostOf(credentials.Host.ToLowerInvariant()));

    private readonly ConcurrentDictionary<string, bool> _basicHosts = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<(string Host, string Scope), (string Token, DateTimeOffset Expires)> _tokens = new();
    private readonly Lock _remembering = new();

    /// <summary>Sets the Authorization header known to work for <paramref name="host"/> and <paramref name="scope"/>.</summary>
    public void Apply(HttpRequestMessage request, string host, string scope)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_tokens.TryGetValue((host, scope), out var token) && token.Expires > time.GetUtcNow())
        {
            request.Headers.Authorization = Bearer(token.Token);
        }
        else if (_basicHosts.ContainsKey(host) && For(host) is { Username: { } user, Password: { } password })
        {
            request.Headers.Authorization = Basic(user, password);
        }
    }

    /// <summary>Answers a 401 to a request that carried <paramref name="sent"/>: learns what the host wants (fetching a
    /// token when needed) and returns the Authorization to retry that request with; null: nothing more to try (what the
    /// host wants is what the request carried, or nothing is known that it would take).</summary>
    public async Task<AuthenticationHeaderValue?> ChallengeAsync(
        HttpResponseMessage response,
        AuthenticationHeaderValue? sent,
        Func<Func<HttpRequestMessage>, CancellationToken, Task<HttpResponseMessage>> send,
        string host,
        string scope,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(response);
        ArgumentNullException.ThrowIfNull(send);
        var known = For(host);
        foreach (var challenge in response.Headers.WwwAuthenticate)
        {
            if (string.Equals(challenge.Scheme, "Basic", StringComparison.OrdinalIgnoreCase))
            {
                if (known is not { Username: { } user, Password: { } password })
                {
                    continue; // a Bearer challenge beside it may still be answered (anonymously)
                }

                // Every request that went out before the host was known to want them (concurrent first pulls) is retried
                // with the credentials; one that carried them and was refused is not.
                _basicHosts.TryAdd(host, true);
                return IsScheme(sent, "Basic") ? null : Basic(user, password);
            }

            if (string.Equals(challenge.Scheme, "Bearer", StringComparison.OrdinalIgnoreCase))
            {
                var now = time.GetUtcNow();
                if (_tokens.TryGetValue((host, scope), out var cached))
                {
                    if (IsScheme(sent, "Bearer") && sent!.Parameter == cached.Token)
                    {
                        // The cached token was refused (expired early, revoked): dropped, unless another request has
                        // replaced it meanwhile. The caller retries only once.
                        _tokens.TryRemove(KeyValuePair.Create((host, scope), cached));
                    }
                    else if (cached.Expires > now)
                    {
                        return Bearer(cached.Token); // another request fetched one since this one went out
                    }
                }

                if (known is { Token: { } staticToken } && (known.Username is null || known.Password is null))
                {
                    if (IsScheme(sent, "Bearer") && sent!.Parameter == staticToken)
                    {
                        return null;
                    }

                    Remember(host, scope, staticToken, now.AddHours(1)); // the same for every scope: learnt again after an hour
                    return Bearer(staticToken);
                }

                var parameters = Parameters(challenge.Parameter ?? "");
                if (!parameters.TryGetValue("realm", out var realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri)
                    || (realmUri.Scheme != Uri.UriSchemeHttps && realmUri.Scheme != Uri.UriSchemeHttp))
                {
                    throw new RegistryException($"registry {host} asked for a bearer token without a usable realm ('{challenge.Parameter}')");
                }

                var query = new StringBuilder();
                if (parameters.TryGetValue("service", out var service))
                {
                    query.Append("service=").Append(Uri.EscapeDataString(service));
                }

                // Our scope, not the challenge's: a push's first request (HEAD of a blob) is challenged for pull only, and
                // the token is cached for the whole push.
                query.Append(query.Length > 0 ? "&" : "").Append("scope=").Append(Uri.EscapeDataString(scope));
                var tokenUri = new UriBuilder(realmUri) { Query = (realmUri.Query.Length > 1 ? realmUri.Query[1..] + "&" : "") + query }.Uri;
                // Not over plain http to another machine, even when the registry is https: the realm is the registry's
                // to name, and the credentials would cross the network in clear.
                var withCredentials = known is { Username: not null, Password: not null } && (tokenUri.Scheme == Uri.UriSchemeHttps || tokenUri.IsLoopback);
                using var tokenResponse = await send(
                    () =>
                    {
                        var tokenRequest = new HttpRequestMessage(HttpMethod.Get, tokenUri);
                        if (withCredentials)
                        {
                            tokenRequest.Headers.Authorization = Basic(known!.Username!, known.Password!);
                        }

                        return tokenRequest;
                    },
                    cancellationToken);
                if (!tokenResponse.IsSuccessStatusCode)
                {
                    throw new RegistryException($"the token service {realmUri.GetLeftPart(UriPartial.Path)} of registry {host} refused a token for {scope}: HTTP {(int)tokenResponse.StatusCode} {tokenResponse.ReasonPhrase}");
                }

                // At most 1 MiB (a token is a few KiB): an endless answer is not read until memory or the timeout give out.
                var body = await RegistryClient.ReadBoundedAsync(tokenResponse.Content, MaxTokenAnswerBytes, cancellationToken)
                    ?? throw new RegistryException($"the token service of registry {host} answered with more than {MaxTokenAnswerBytes} bytes");
                using var document = ParseToken(body, host);
                var root = document.RootElement;
                var token = (root.TryGetProperty("token", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null)
                    ?? (root.TryGetProperty("access_token", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString() : null)
                    ?? throw new RegistryException($"the token service of registry {host} answered without a token");
                var lifetime = root.TryGetProperty("expires_in", out var e) && e.TryGetInt32(out var seconds) && seconds > 0
                    ? Math.Min(seconds, (int)MaxTokenLifetime.TotalSeconds)
                    : 60;
                Remember(host, scope, token, time.GetUtcNow().AddSeconds(lifetime - Math.Min(10, lifetime / 2)));
                return Bearer(token); // this request's retry takes the token fetched for it, whatever the cache holds by then
            }
        }

        return null;
    }

    private static JsonDocument ParseToken(byte[] body, string host)
    {
        try
        {
            var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object)
            {
                return document;
            }

            document.Dispose();
        }
        catch (JsonException)
        {
            // below
        }

        throw new RegistryException($"the token service of registry {host} answered with something that is not a JSON object");
    }

    /// <summary>Tokens cached (for tests).</summary>
    internal int CachedTokens => _tokens.Count;

    /// <summary>Caches <paramref name="token"/> for <paramref name="scope"/> (at most <see cref="MaxTokenLifetime"/>; not
    /// at all when longer than <see cref="MaxCachedTokenLength"/>) and drops the tokens that have expired: one entry per
    /// repository pulled, which were never dropped before. With <see cref="MaxCachedTokens"/> cached, the one that
    /// expires soonest makes room.</summary>
    private void Remember(string host, string scope, string token, DateTimeOffset expires)
    {
        if (token.Length > MaxCachedTokenLength)
        {
            return;
        }

        lock (_remembering)
        {
            var now = time.GetUtcNow();
            foreach (var entry in _tokens)
            {
                if (entry.Value.Expires <= now)
                {
                    _tokens.TryRemove(entry);
                }
            }

            if (_tokens.Count >= MaxCachedTokens && !_tokens.ContainsKey((host, scope)))
            {
                _tokens.TryRemove(_tokens.MinBy(entry => entry.Value.Expires));
            }

            _tokens[(host, scope)] = (token, expires < now + MaxTokenLifetime ? expires : now + MaxTokenLifetime);
        }
    }

    private static bool IsScheme(AuthenticationHeaderValue? header, string scheme) =>
        header is not null && string.Equals(header.Scheme, scheme, StringComparison.OrdinalIgnoreCase);

    private static AuthenticationHeaderValue Bearer(string token) => new("Bearer", token);

    /// <summary>Whether the credentials are sent to <paramref name="host"/> (an API host): the same comparison as every
    /// request's, for a caller that warns when they will not be.</summary>
    public bool HasCredentialsFor(string host) => For(host) is not null;

    private RegistryCredentials? For(string host) =>
        credentials is not null && string.Equals(_credentialsHost, WithoutHttpsPort(host), StringComparison.OrdinalIgnoreCase) ? credentials : null;

    /// <summary>A host without <c>:443</c>, the port registries are spoken to on when none is named: <c>ghcr.io:443</c>
    /// (PROXY_REGISTRY_URL or the image's) is <c>ghcr.io</c>, whose credentials were silently unused.</summary>
    private static string WithoutHttpsPort(string host) => host.EndsWith(":443", StringComparison.Ordinal) ? host[..^4] : host;

    private static AuthenticationHeaderValue Basic(string user, string password) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));

    /// <summary>The comma-separated <c>key="value"</c> pairs of a challenge.</summary>
    private static Dictionary<string, string> Parameters(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && (text[i] == ',' || char.IsWhiteSpace(text[i])))
            {
                i++;
            }

            var eq = text.IndexOf('=', i);
            if (eq < 0)
            {
                break;
            }

            var key = text[i..eq].Trim();
            i = eq + 1;
            string value;
            if (i < text.Length && text[i] == '"')
            {
                var end = text.IndexOf('"', i + 1);
                end = end < 0 ? text.Length : end;
                value = text[(i + 1)..end];
                i = end + 1;
            }
            else
            {
                var end = text.IndexOf(',', i);
                end = end < 0 ? text.Length : end;
                value = text[i..end].Trim();
                i = end;
            }

            result[key] = value;
        }

        return result;
    }
}
