using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Propeller.Manager.Tests.Http;

/// <summary>The MANAGER_HTTP_SERVER_* settings (spec §8) and GET /health's instance_id, on the real host.</summary>
public sealed class HttpServerSettingsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("manager-https-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task GivenAPemCertificateAndKey_WhenTheManagerStarts_ThenItServesHttpsWithIt_AndTheHeaderLimitsApply()
    {
        var (certFile, keyFile, thumbprint) = WriteSelfSignedPem(_dir);
        await using var server = await ManagerServer.StartAsync(
            "api_https",
            new Dictionary<string, string>
            {
                ["MANAGER_HTTP_HOST"] = "127.0.0.1",
                ["MANAGER_HTTP_PORT"] = "0",
                ["MANAGER_HTTP_SERVER_CERT"] = certFile,
                ["MANAGER_HTTP_SERVER_KEY"] = keyFile,
                ["MANAGER_HTTP_SERVER_READ_HEADER_TIMEOUT"] = "7s",
                ["MANAGER_HTTP_SERVER_IDLE_TIMEOUT"] = "61s",
                ["MANAGER_HTTP_SERVER_MAX_HEADER_BYTES"] = "4096",
            },
            waitUntilReady: false,
            args: []);

        var address = server.Client.BaseAddress!;
        address.Scheme.ShouldBe("https");
        string? seen = null;
        using var handler = new HttpClientHandler
        {
            // Trusts exactly the certificate this test made (by thumbprint), nothing else.
#pragma warning disable MA0039
            ServerCertificateCustomValidationCallback = (_, certificate, _, _) =>
            {
                seen = certificate?.Thumbprint;
                return certificate?.Thumbprint == thumbprint;
            },
#pragma warning restore MA0039
        };
        using var client = new HttpClient(handler) { BaseAddress = address };
        var ct = TestContext.Current.CancellationToken;

        (await client.GetStringAsync("/health/live", ct)).ShouldContain("pass");
        seen.ShouldBe(thumbprint);

        // MAX_HEADER_BYTES is Kestrel's MaxRequestHeadersTotalSize (default 32 KiB): 8 KiB of headers is too much here.
        using var big = new HttpRequestMessage(HttpMethod.Get, "/health/live");
        big.Headers.Add("X-Padding", new string('a', 8192));
        (await client.SendAsync(big, ct)).StatusCode.ShouldBe(HttpStatusCode.RequestHeaderFieldsTooLarge);

        var limits = server.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits;
        limits.RequestHeadersTimeout.ShouldBe(TimeSpan.FromSeconds(7));
        limits.KeepAliveTimeout.ShouldBe(TimeSpan.FromSeconds(61));
        limits.MaxRequestHeadersTotalSize.ShouldBe(4096);
    }

    [Fact]
    public async Task GivenTheIdentityFromMANAGER_CLIENT_ID_WhenHealthIsRead_ThenInstanceIdIsThatIdentity()
    {
        await using var server = await ManagerServer.StartAsync(
            "api_health_identity", new Dictionary<string, string> { ["MANAGER_ENTITY_ID"] = "", ["MANAGER_CLIENT_ID"] = "manager-from-client-id" });

        var health = await server.Client.GetFromJsonAsync<JsonElement>("/health", TestContext.Current.CancellationToken);

        health.GetProperty("instance_id").GetString().ShouldBe("manager-from-client-id");
    }

    /// <summary>A self-signed certificate for 127.0.0.1 written as PEM certificate and key files.</summary>
    internal static (string CertFile, string KeyFile, string Thumbprint) WriteSelfSignedPem(string dir)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var certFile = Path.Combine(dir, "server.crt");
        var keyFile = Path.Combine(dir, "server.key");
        File.WriteAllText(certFile, certificate.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        return (certFile, keyFile, certificate.Thumbprint);
    }
}
