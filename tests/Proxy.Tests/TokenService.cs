using System.Buffers.Text;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace Propeller.Proxy.Tests;

/// <summary>
/// The token service of the bearer-token registry scripts/infra.sh starts (distribution's token auth: it trusts
/// token.crt and sends clients to this realm). Issues RS256 JWTs with the certificate in <c>x5c</c>: anonymous callers
/// get pull on any repository not named <c>private-…</c>; callers with the basic credentials get what they ask for.
/// Counts the tokens it issued.
/// </summary>
internal sealed class TokenService : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly RSA _key = RSA.Create();
    private readonly X509Certificate2 _certificate;
    private int _issued;

    public TokenService()
    {
        var keyFile = Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY_TOKEN_KEY") is { Length: > 0 } k ? k : Path.Combine(Path.GetDirectoryName(TestRegistry.StorageDirectory)!, "token.key");
        _key.ImportFromPem(File.ReadAllText(keyFile));
        _certificate = X509Certificate2.CreateFromPem(File.ReadAllText(Path.ChangeExtension(keyFile, ".crt")));
        var port = Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY_TOKEN_REALM_PORT") is { Length: > 0 } p ? p : "55003";
        _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        _listener.Start();
        _ = ServeAsync();
    }

    public static string Registry => Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY_TOKEN") is { Length: > 0 } value ? value : "127.0.0.1:55002";

    public int Issued => Volatile.Read(ref _issued);

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        // The serving loop ends when GetContextAsync throws on the closed listener.
        _key.Dispose();
        _certificate.Dispose();
    }

    private async Task ServeAsync()
    {
        while (true)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            var request = context.Request;
            var scope = request.QueryString["scope"] ?? "";
            var parts = scope.Split(':');
            var authorized = request.Headers["Authorization"] == "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{TestRegistry.User}:{TestRegistry.Password}"));
            var repository = parts.Length == 3 ? parts[1] : "";
            string[] granted = authorized ? parts.Length == 3 ? parts[2].Split(',') : [] : repository.Contains("private-", StringComparison.Ordinal) ? [] : ["pull"];
            if (!authorized && granted.Length == 0)
            {
                context.Response.StatusCode = 401;
                context.Response.Close();
                continue;
            }

            Interlocked.Increment(ref _issued);
            var token = Token(repository, granted, authorized ? TestRegistry.User : "");
            var body = JsonSerializer.SerializeToUtf8Bytes(new { token, expires_in = 300 });
            context.Response.ContentType = "application/json";
            await context.Response.OutputStream.WriteAsync(body, CancellationToken.None);
            context.Response.Close();
        }
    }

    private string Token(string repository, string[] actions, string subject)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var header = JsonSerializer.SerializeToUtf8Bytes(new { alg = "RS256", typ = "JWT", x5c = new[] { Convert.ToBase64String(_certificate.RawData) } });
        var claims = JsonSerializer.SerializeToUtf8Bytes(new
        {
            iss = "propeller-test-token",
            sub = subject,
            aud = "propeller-test-registry",
            exp = now + 300,
            nbf = now - 10,
            iat = now,
            jti = Guid.NewGuid().ToString("N"),
            access = new[] { new { type = "repository", name = repository, actions } },
        });
        var signed = Base64Url.EncodeToString(header) + "." + Base64Url.EncodeToString(claims);
        var signature = _key.SignData(Encoding.ASCII.GetBytes(signed), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return signed + "." + Base64Url.EncodeToString(signature);
    }
}
