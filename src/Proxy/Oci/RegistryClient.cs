using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Polly;
using Polly.Retry;

namespace Propeller.Proxy.Oci;

/// <summary>
/// A small client of the OCI distribution API over HttpClient (docs/adr/0012-own-oci-client.md: no OCI client
/// library is served here). Pull: the manifest the reference names (tag or digest; a digest is checked against the
/// manifest's bytes), an index resolved to the manifest that holds a Wasm layer, the Wasm layer picked by media type
/// (the largest layer only as the original's fallback), the blob read with its size capped and its digest verified.
/// Push (tests, benchmark, <c>propeller-proxy push</c>): monolithic blob uploads and manifests. Every failure is a
/// <see cref="RegistryException"/> whose message names the reference and what went wrong. A pull's GETs are retried
/// (<see cref="MaxRetries"/> times, backing off from 200 ms, as oras-go's client does) on 408, 429, 500, 502, 503, 504 and
/// a connection refused or cut before the answer; a Retry-After up to <see cref="MaxRetryAfter"/> is honoured, a longer one
/// fails at once. The caller's cancellation (the proxy's PROXY_REGISTRY_TIMEOUT) bounds the whole.
/// </summary>
public sealed class RegistryClient(HttpClient http, RegistryAuth auth, Func<string, bool> plainHttp, ILogger? logger = null)
{
    /// <summary>Retries of one GET after its first attempt.</summary>
    public const int MaxRetries = 3;

    private const long MaxManifestBytes = 4 << 20;

    /// <summary>The most of an error answer's body read for its OCI error code and message.</summary>
    private const long MaxErrorBytes = 64 << 10;
    private const int MaxIndexEntries = 64;

    /// <summary>The longest Retry-After waited for; a registry asking for more fails the pull with its status.</summary>
    private static readonly TimeSpan MaxRetryAfter = TimeSpan.FromSeconds(10);

    /// <summary>The reference a retried request is for, in its resilience context (for the log line).</summary>
    private static readonly ResiliencePropertyKey<string> ReferenceKey = new("reference");

    private readonly ResiliencePipeline<HttpResponseMessage> _retries = new ResiliencePipelineBuilder<HttpResponseMessage>()
        .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
        {
            MaxRetryAttempts = MaxRetries,
            BackoffType = DelayBackoffType.Exponential,
            Delay = TimeSpan.FromMilliseconds(200),
            MaxDelay = TimeSpan.FromSeconds(3),
            UseJitter = true,
            ShouldHandle = args => ValueTask.FromResult(Transient(args.Outcome)),
            DelayGenerator = args => ValueTask.FromResult(args.Outcome.Result is { } response ? RetryAfter(response) : null),
            OnRetry = args =>
            {
                if (logger is not null && args.Context.Properties.TryGetValue(ReferenceKey, out var reference))
                {
                    var what = args.Outcome.Result is { } response ? $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}" : args.Outcome.Exception?.Message ?? "?";
                    ProxyLog.RegistryRetry(logger, reference, what, args.AttemptNumber + 1, MaxRetries, (long)args.RetryDelay.TotalMilliseconds);
                }

                return ValueTask.CompletedTask;
            },
        })
        .Build();

    /// <summary>Resolves <paramref name="reference"/> to the descriptor of its Wasm layer; refuses one over
    /// <paramref name="maxBytes"/> before downloading it.</summary>
    public async Task<Descriptor> ResolveLayerAsync(ImageReference reference, long maxBytes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reference);
        var (document, mediaType) = await GetManifestAsync(reference, reference.Version, cancellationToken);
        if (OciMediaTypes.IsIndex(mediaType) || (mediaType is null && document.Manifests is not null))
        {
            document = await PickFromIndexAsync(reference, document, cancellationToken);
        }

        var layers = document.Layers ?? [];
        if (layers.Count == 0)
        {
            throw new RegistryException($"image {reference}: the manifest has no layers");
        }

        for (var i = 0; i < layers.Count; i++)
        {
            Check(reference, layers[i], $"layer {i} of the manifest");
        }

        // By media type first; the original took the largest layer whatever its type, kept as the fallback.
        var layer = layers.FirstOrDefault(l => OciMediaTypes.IsWasm(l.MediaType)) ?? layers.MaxBy(l => l.Size)!;
        if (layer.Size > maxBytes)
        {
            throw new RegistryException($"image {reference}: the artefact is {layer.Size} bytes, over the proxy's limit of {maxBytes} bytes (PROXY_MAX_ARTIFACT_BYTES)");
        }

        return layer;
    }

    /// <summary>Downloads the blob <paramref name="layer"/> of <paramref name="reference"/>'s repository, verifying its size
    /// and digest.</summary>
    public Task<byte[]> GetBlobAsync(ImageReference reference, Descriptor layer, long maxBytes, CancellationToken cancellationToken) =>
        GetBlobAsync(reference, layer, maxBytes, received: null, cancellationToken);

    /// <summary>As <see cref="GetBlobAsync(ImageReference, Descriptor, long, CancellationToken)"/>; besides,
    /// <paramref name="received"/> is called after each read with the buffer and how many bytes of it have arrived, so
    /// that the caller can use the first bytes while the rest arrive. Those bytes are not verified yet: the digest is
    /// checked once all have arrived (and the call throws if it does not match).</summary>
    public async Task<byte[]> GetBlobAsync(
        ImageReference reference, Descriptor layer, long maxBytes, Func<byte[], int, ValueTask>? received, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(layer);
        if (layer.Size < 0 || layer.Size > maxBytes)
        {
            throw new RegistryException($"image {reference}: the artefact is {layer.Size} bytes, over the proxy's limit of {maxBytes} bytes (PROXY_MAX_ARTIFACT_BYTES)");
        }

        using var response = await SendAsync(reference, () => new HttpRequestMessage(HttpMethod.Get, Url(reference, $"blobs/{layer.Digest}")), push: false, cancellationToken);
        await EnsureSuccessAsync(response, reference, $"blob {layer.Digest}", cancellationToken);
        // Not zeroed: only what arrived is read (received gets the count, and a short body throws below), so the pages of
        // a large blob become resident as its bytes arrive, not all at once when the answer's headers come (50 fetches
        // of manifests claiming 100 MiB each made 5 GiB resident before a byte had come).
        var data = GC.AllocateUninitializedArray<byte>(checked((int)layer.Size));
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        var offset = 0;
        int read;
        while (offset < data.Length && (read = await ReadBlobAsync(body, data.AsMemory(offset), reference, layer, offset, cancellationToken)) > 0)
        {
            offset += read;
            if (received is not null)
            {
                await received(data, offset);
            }
        }

        if (offset < data.Length || await ReadBlobAsync(body, new byte[1], reference, layer, offset, cancellationToken) > 0)
        {
            throw new RegistryException($"image {reference}: blob {layer.Digest} is not the {layer.Size} bytes its manifest says");
        }

        Verify(reference, data, layer.Digest, "blob");
        return data;
    }

    /// <summary>One read of a blob's body; the connection cut mid-way (outside <see cref="SendAsync"/>, which maps those of
    /// the request) is a <see cref="RegistryException"/> naming the image and the registry, not an unexpected error.</summary>
    private static async ValueTask<int> ReadBlobAsync(Stream body, Memory<byte> buffer, ImageReference reference, Descriptor layer, long offset, CancellationToken cancellationToken)
    {
        try
        {
            return await body.ReadAsync(buffer, cancellationToken);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            throw new RegistryException($"image {reference}: registry {reference.ApiHost} cut blob {layer.Digest} off after {offset} of {layer.Size} bytes ({ex.Message})", ex);
        }
    }

    /// <summary>Uploads <paramref name="data"/> as a blob of <paramref name="reference"/>'s repository (monolithic POST +
    /// PUT); returns its digest. An existing blob is not sent again.</summary>
    public async Task<string> PushBlobAsync(ImageReference reference, byte[] data, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reference);
        var digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));
        using (var head = await SendAsync(reference, () => new HttpRequestMessage(HttpMethod.Head, Url(reference, $"blobs/{digest}")), push: true, cancellationToken))
        {
            if (head.IsSuccessStatusCode)
            {
                return digest;
            }
        }

        Uri location;
        using (var start = await SendAsync(reference, () => new HttpRequestMessage(HttpMethod.Post, Url(reference, "blobs/uploads/")), push: true, cancellationToken))
        {
            await EnsureSuccessAsync(start, reference, "blob upload", cancellationToken);
            location = start.Headers.Location is { } l ? (l.IsAbsoluteUri ? l : new Uri(Url(reference, ""), l)) : throw new RegistryException($"image {reference}: the upload had no Location");
        }

        var put = new UriBuilder(location) { Query = (location.Query.Length > 1 ? location.Query[1..] + "&" : "") + "digest=" + Uri.EscapeDataString(digest) }.Uri;
        using var done = await SendAsync(
            reference,
            () => new HttpRequestMessage(HttpMethod.Put, put) { Content = new ByteArrayContent(data) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } } },
            push: true,
            cancellationToken);
        await EnsureSuccessAsync(done, reference, "blob upload", cancellationToken);
        return digest;
    }

    /// <summary>Puts a manifest (or index) under <paramref name="reference"/>'s tag (or digest); returns its digest.</summary>
    public async Task<string> PushManifestAsync(ImageReference reference, ManifestDocument manifest, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(manifest);
        var mediaType = manifest.MediaType ?? (manifest.Manifests is not null ? OciMediaTypes.ImageIndex : OciMediaTypes.ImageManifest);
        var body = JsonSerializer.SerializeToUtf8Bytes(manifest);
        using var response = await SendAsync(
            reference,
            () => new HttpRequestMessage(HttpMethod.Put, Url(reference, $"manifests/{reference.Version}")) { Content = new ByteArrayContent(body) { Headers = { ContentType = new MediaTypeHeaderValue(mediaType) } } },
            push: true,
            cancellationToken);
        await EnsureSuccessAsync(response, reference, "manifest upload", cancellationToken);
        return "sha256:" + Convert.ToHexStringLower(SHA256.HashData(body));
    }

    /// <summary>Pushes a Wasm module the way wasm-to-oci and ORAS do: an empty config and one
    /// <see cref="OciMediaTypes.WasmLayer"/> layer. Returns the manifest's digest.</summary>
    public async Task<string> PushWasmAsync(ImageReference reference, byte[] module, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(module);
        var config = "{}"u8.ToArray();
        var configDigest = await PushBlobAsync(reference, config, cancellationToken);
        var layerDigest = await PushBlobAsync(reference, module, cancellationToken);
        return await PushManifestAsync(
            reference,
            new ManifestDocument
            {
                MediaType = OciMediaTypes.ImageManifest,
                Config = new Descriptor(OciMediaTypes.WasmConfig, configDigest, config.Length),
                Layers = [new Descriptor(OciMediaTypes.WasmLayer, layerDigest, module.Length)],
            },
            cancellationToken);
    }

    private async Task<(ManifestDocument Document, string? MediaType)> GetManifestAsync(ImageReference reference, string version, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(
            reference,
            () =>
            {
                var request = new HttpRequestMessage(HttpMethod.Get, Url(reference, $"manifests/{version}"));
                foreach (var type in OciMediaTypes.Manifests)
                {
                    request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
                }

                return request;
            },
            push: false,
            cancellationToken);
        await EnsureSuccessAsync(response, reference, version == reference.Version ? null : $"manifest {version}", cancellationToken);
        if (response.Content.Headers.ContentLength > MaxManifestBytes)
        {
            throw new RegistryException($"image {reference}: the manifest is larger than {MaxManifestBytes} bytes");
        }

        // Read at most one byte past the limit: a body without a length (chunked) is not read whole before the check.
        var bytes = await ReadBoundedAsync(response.Content, MaxManifestBytes, cancellationToken)
            ?? throw new RegistryException($"image {reference}: the manifest is larger than {MaxManifestBytes} bytes");

        if (version.Contains(':', StringComparison.Ordinal))
        {
            Verify(reference, bytes, version, "manifest");
        }

        ManifestDocument document;
        try
        {
            document = JsonSerializer.Deserialize<ManifestDocument>(bytes) ?? throw new JsonException("null");
        }
        catch (JsonException ex)
        {
            throw new RegistryException($"image {reference}: the manifest is not valid JSON ({ex.Message})", ex);
        }

        var mediaType = document.MediaType ?? response.Content.Headers.ContentType?.MediaType;
        if (!OciMediaTypes.IsIndex(mediaType) && document.Manifests is null && mediaType is not (null or OciMediaTypes.ImageManifest or OciMediaTypes.DockerManifest or "application/json"))
        {
            throw new RegistryException($"image {reference}: unsupported manifest type {mediaType}");
        }

        return (document, mediaType);
    }

    /// <summary>The first manifest of an index that has a Wasm layer: entries that say they are Wasm (artifact type,
    /// platform wasi/wasm) are tried first; attestations are skipped.</summary>
    private async Task<ManifestDocument> PickFromIndexAsync(ImageReference reference, ManifestDocument index, CancellationToken cancellationToken)
    {
        var entries = (index.Manifests ?? [])
            .Where(m => m.Annotations?.GetValueOrDefault("vnd.docker.reference.type") != "attestation-manifest")
            .OrderByDescending(m => LooksWasm(m))
            .Take(MaxIndexEntries)
            .ToList();
        // Each entry checked just before it is fetched, and one that fails (a bad digest, a 404, a type we do not read)
        // is passed over for the next: one such entry (an image for another platform) aborted the pull.
        RegistryException? firstError = null;
        foreach (var entry in entries)
        {
            try
            {
                Check(reference, entry, "an entry of the index");
                var (document, mediaType) = await GetManifestAsync(reference, entry.Digest, cancellationToken);
                if (!OciMediaTypes.IsIndex(mediaType) && document.Layers?.Any(l => OciMediaTypes.IsWasm(l.MediaType)) == true)
                {
                    return document;
                }
            }
            catch (RegistryException ex)
            {
                firstError ??= ex;
            }
        }

        var platforms = string.Join(", ", (index.Manifests ?? []).Select(m => m.Platform?.ToString() ?? m.ArtifactType ?? m.MediaType ?? "?"));
        var message = $"image {reference} is an index without a Wasm artefact (its manifests: {(platforms.Length > 0 ? platforms : "none")}); push the module with a {OciMediaTypes.WasmLayer} layer";
        throw firstError is null ? new RegistryException(message) : new RegistryException($"{message} (the first entry that failed: {firstError.Message})", firstError);
    }

    /// <summary>Refuses a descriptor without a digest of the form <c>algorithm:hex</c> (sha256: 64 digits, sha512: 128)
    /// or with a negative size, before anything is fetched or remembered by it. JSON leaves a missing <c>digest</c> null
    /// whatever the record says. Another algorithm is refused here too, not only once the blob is in (<see cref="Verify"/>
    /// cannot check it): a digest <c>foo:</c> with megabytes of hex was remembered for its reference or tag first.</summary>
    private static void Check(ImageReference reference, Descriptor descriptor, string what)
    {
        var digest = (string?)descriptor.Digest;
        if (digest is null)
        {
            throw new RegistryException($"image {reference}: {what} has no digest");
        }

        var colon = digest.IndexOf(':', StringComparison.Ordinal);
        var algorithm = colon > 0 ? digest[..colon] : "";
        var hex = colon > 0 ? digest[(colon + 1)..] : "";
        var valid = algorithm.Length > 0 && hex.Length > 0
            && algorithm.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '+' or '.' or '_' or '-')
            && char.IsAsciiLetterOrDigit(algorithm[0]) && char.IsAsciiLetterOrDigit(algorithm[^1])
            && hex.All(char.IsAsciiHexDigit)
            && algorithm switch { "sha256" => hex.Length == 64, "sha512" => hex.Length == 128, _ => false };
        if (!valid)
        {
            throw new RegistryException(
                $"image {reference}: {what} has an invalid digest '{(digest.Length > 200 ? digest[..200] + "…" : digest)}' (expected sha256: and 64 hex digits, or sha512: and 128)");
        }

        if (descriptor.Size < 0)
        {
            throw new RegistryException($"image {reference}: {what} has a negative size ({descriptor.Size})");
        }
    }

    private static bool LooksWasm(Descriptor entry) =>
        entry.ArtifactType?.Contains("wasm", StringComparison.OrdinalIgnoreCase) == true
        || entry.Platform?.Architecture == "wasm"
        || entry.Platform?.Os?.StartsWith("wasi", StringComparison.Ordinal) == true;

    private static void Verify(ImageReference reference, byte[] data, string digest, string what)
    {
        var colon = digest.IndexOf(':', StringComparison.Ordinal);
        var algorithm = colon > 0 ? digest[..colon] : "";
        var actual = algorithm switch
        {
            "sha256" => Convert.ToHexStringLower(SHA256.HashData(data)),
            "sha512" => Convert.ToHexStringLower(SHA512.HashData(data)),
            _ => throw new RegistryException($"image {reference}: unsupported digest algorithm '{algorithm}' of {what} {digest}"),
        };
        if (!string.Equals(actual, digest[(colon + 1)..], StringComparison.OrdinalIgnoreCase))
        {
            throw new RegistryException($"image {reference}: {what} {digest} failed verification (its bytes hash to {algorithm}:{actual})");
        }
    }

    private Uri Url(ImageReference reference, string path) =>
        new($"{(plainHttp(reference.ApiHost) ? "http" : "https")}://{reference.ApiHost}/v2/{reference.Repository}/{path}");

    /// <summary>Sends (a pull's GETs with retries, <see cref="Transient"/>); a failure to connect or to get an answer in
    /// time becomes a <see cref="RegistryException"/>.</summary>
    private async Task<HttpResponseMessage> SendAsync(ImageReference reference, Func<HttpRequestMessage> create, bool push, CancellationToken cancellationToken)
    {
        try
        {
            if (push)
            {
                return await SendOnceAsync(reference, create, push, cancellationToken);
            }

            var context = ResilienceContextPool.Shared.Get(cancellationToken);
            context.Properties.Set(ReferenceKey, reference.ToString());
            try
            {
                return await _retries.ExecuteAsync(async c => await SendOnceAsync(reference, create, push, c.CancellationToken), context);
            }
            finally
            {
                ResilienceContextPool.Shared.Return(context);
            }
        }
        catch (HttpRequestException ex)
        {
            var why = ex.InnerException is SocketException socket ? socket.Message : ex.Message;
            throw new RegistryException($"image {reference}: registry {reference.ApiHost} is unreachable ({why})", ex);
        }
        catch (TaskCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new RegistryException($"image {reference}: registry {reference.ApiHost} did not answer in time", ex);
        }
    }

    /// <summary>A token service's GET, with the registry's transient retry: a 503 or 429 from the realm was the pull's
    /// failure at once.</summary>
    private async Task<HttpResponseMessage> SendTokenRequestAsync(ImageReference reference, Func<HttpRequestMessage> create, CancellationToken cancellationToken)
    {
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        context.Properties.Set(ReferenceKey, reference.ToString());
        try
        {
            return await _retries.ExecuteAsync(
                async c =>
                {
                    using var request = create();
                    return await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, c.CancellationToken);
                },
                context);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    /// <summary>Whether a GET's outcome is worth another attempt: a status that says "later" or a connection that failed
    /// before the answer (not a timeout: HttpClient's is the whole PROXY_REGISTRY_TIMEOUT).</summary>
    private static bool Transient(Outcome<HttpResponseMessage> outcome) => outcome switch
    {
        { Result: { } response } => (response.StatusCode is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests or HttpStatusCode.InternalServerError
            or HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout)
            && (RetryAfter(response) is not { } wait || wait <= MaxRetryAfter),
        { Exception: HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.ResponseEnded } } => true,
        _ => false,
    };

    /// <summary>The wait a response's Retry-After asks for (seconds or a date); null when it has none.</summary>
    private static TimeSpan? RetryAfter(HttpResponseMessage response) => response.Headers.RetryAfter switch
    {
        { Delta: { } delta } => delta,
        { Date: { } date } => date - DateTimeOffset.UtcNow is var wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero,
        _ => null,
    };

    /// <summary>Sends with what auth knows for the host; a 401 is answered once (token, basic) and the request made anew
    /// with the Authorization that answer gave.</summary>
    private async Task<HttpResponseMessage> SendOnceAsync(ImageReference reference, Func<HttpRequestMessage> create, bool push, CancellationToken cancellationToken)
    {
        var scope = $"repository:{reference.Repository}:{(push ? "pull,push" : "pull")}";
        AuthenticationHeaderValue? retryWith = null;
        for (var attempt = 0; ; attempt++)
        {
            using var request = create();
            if (retryWith is null)
            {
                auth.Apply(request, reference.ApiHost, scope);
            }
            else
            {
                request.Headers.Authorization = retryWith;
            }

            var sent = request.Headers.Authorization;
            var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (response.StatusCode != HttpStatusCode.Unauthorized || attempt > 0)
            {
                return response;
            }

            try
            {
                retryWith = await auth.ChallengeAsync(response, sent, (create, ct) => SendTokenRequestAsync(reference, create, ct), reference.ApiHost, scope, cancellationToken);
            }
            catch (HttpRequestException ex)
            {
                response.Dispose();
                throw new RegistryException($"image {reference}: the token service of registry {reference.ApiHost} is unreachable ({ex.Message})", ex);
            }
            catch
            {
                // A refused token, a timeout or a cancellation: the 401 still holds its connection until disposed.
                response.Dispose();
                throw;
            }

            if (retryWith is null)
            {
                return response;
            }

            response.Dispose();
        }
    }

    /// <summary>The body, or null when it is longer than <paramref name="max"/> bytes (then read no further than that).</summary>
    internal static async Task<byte[]?> ReadBoundedAsync(HttpContent content, long max, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength > max)
        {
            return null;
        }

        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        using var buffer = new MemoryStream();
        var block = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(block, cancellationToken)) > 0)
        {
            if (buffer.Length + read > max)
            {
                return null;
            }

            await buffer.WriteAsync(block.AsMemory(0, read), cancellationToken);
        }

        return buffer.ToArray();
    }

    /// <summary>Turns an error status into a message: the registry's error code and message when it sent them.</summary>
    private static async Task EnsureSuccessAsync(HttpResponseMessage response, ImageReference reference, string? what, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        string? code = null;
        string? message = null;
        try
        {
            var body = await ReadBoundedAsync(response.Content, MaxErrorBytes, cancellationToken);
            using var document = JsonDocument.Parse(body is null ? "{}"u8.ToArray() : body);
            if (document.RootElement.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Array && errors.GetArrayLength() > 0)
            {
                var first = errors[0];
                code = first.TryGetProperty("code", out var c) ? c.GetString() : null;
                message = first.TryGetProperty("message", out var m) ? m.GetString() : null;
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or HttpRequestException or IOException)
        {
            // no error body to quote
        }

        var status = $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}{(code is null ? "" : $", {code}: {message}")}";
        var subject = what ?? $"{(reference.Digest is null ? "tag " + reference.Tag : "digest " + reference.Digest)}";
        throw new RegistryException((response.StatusCode, code) switch
        {
            (HttpStatusCode.NotFound, "NAME_UNKNOWN") => $"image {reference}: repository {reference.Repository} not found on {reference.ApiHost} ({status})",
            (HttpStatusCode.NotFound, _) => $"image {reference}: {subject} not found in {reference.ApiHost}/{reference.Repository} ({status})",
            (HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden, _) => $"image {reference}: not authorized ({status}); check PROXY_AUTHENTICATE, PROXY_REGISTRY_URL and the credentials",
            _ => $"image {reference}: {what ?? "manifest"} request failed ({status})",
        });
    }
}
