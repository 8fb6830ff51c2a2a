using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Tests;

/// <summary>
/// A registry played by an HttpMessageHandler, for what the real one (<see cref="TestRegistry"/>) cannot be made to do:
/// answer 503 once, hold two requests at a barrier before challenging both, serve a manifest whose layer has no digest
/// or an artefact too large for an array. Every request is noted (method, path, Authorization) before it is answered.
/// </summary>
internal sealed class StubRegistry(Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>> answer) : HttpMessageHandler
{
    /// <summary>A host no test resolves: the stub answers before any connection.</summary>
    public const string Host = "registry.stub:5000";

    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>The requests noted so far whose path ends with <paramref name="suffix"/>.</summary>
    public int Count(string suffix) => Requests.Count(r => r.Split(' ')[1].EndsWith(suffix, StringComparison.Ordinal));

    /// <summary>An OCI manifest with one Wasm layer of <paramref name="module"/> (digest and size as given, else its own).</summary>
    public static HttpResponseMessage Manifest(byte[] module, string? digest = "", long? size = null) => ManifestOf(ManifestJson(module, digest, size));

    /// <summary>A 200 carrying the manifest <paramref name="json"/>.</summary>
    public static HttpResponseMessage ManifestOf(byte[] json) =>
        new(HttpStatusCode.OK) { Content = new ByteArrayContent(json) { Headers = { ContentType = new MediaTypeHeaderValue(OciMediaTypes.ImageManifest) } } };

    /// <summary>The bytes of <see cref="Manifest(byte[], string?, long?)"/>'s manifest; its layer annotated with
    /// <paramref name="annotations"/> when given.</summary>
    public static byte[] ManifestJson(byte[] module, string? digest = "", long? size = null, IReadOnlyDictionary<string, string>? annotations = null)
    {
        var layer = new Dictionary<string, object?> { ["mediaType"] = OciMediaTypes.WasmLayer, ["size"] = size ?? module.Length };
        if (digest is not null)
        {
            layer["digest"] = digest.Length > 0 ? digest : DigestOf(module);
        }

        if (annotations is not null)
        {
            layer["annotations"] = annotations;
        }

        return JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = OciMediaTypes.ImageManifest,
            ["config"] = new { mediaType = OciMediaTypes.WasmConfig, digest = DigestOf("{}"u8.ToArray()), size = 2 },
            ["layers"] = new[] { layer },
        });
    }

    public static HttpResponseMessage Blob(byte[] data) => new(HttpStatusCode.OK) { Content = new ByteArrayContent(data) };

    /// <summary>A 401 with the <c>WWW-Authenticate</c> challenge <paramref name="challenge"/> (scheme and parameter).</summary>
    public static HttpResponseMessage Challenge(string challenge)
    {
        var response = new HttpResponseMessage(HttpStatusCode.Unauthorized)
        {
            Content = new StringContent("""{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}""", Encoding.UTF8, "application/json"),
        };
        response.Headers.TryAddWithoutValidation("WWW-Authenticate", challenge);
        return response;
    }

    public static string DigestOf(byte[] data) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Requests.Enqueue($"{request.Method} {request.RequestUri!.AbsolutePath} {request.Headers.Authorization}");
        return answer(request, cancellationToken);
    }
}
