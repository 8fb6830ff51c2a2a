using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Propeller.Edge.Configuration;

namespace Propeller.Edge.Fetching;

/// <summary>The HttpClient for image downloads: 30 s, redirects followed, PROPLET_HTTP_TLS_CA_CERT as an extra root
/// and PROPLET_HTTP_TLS_INSECURE_SKIP_VERIFY (spec §2.2).</summary>
public static class DownloadClient
{
    public static HttpClient Create(PropletSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var handler = new SocketsHttpHandler { AllowAutoRedirect = true };
        if (settings.HttpTlsInsecureSkipVerify || settings.HttpTlsCaCert is not null)
        {
            var extra = settings.HttpTlsCaCert is { } file ? X509CertificateLoader.LoadCertificateFromFile(file) : null;
            var insecure = settings.HttpTlsInsecureSkipVerify;
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                Validate(certificate as X509Certificate2, errors, extra, insecure);
        }

        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
    }

    /// <summary>System trust first; then, for a chain error only, trust through the configured CA.</summary>
    private static bool Validate(X509Certificate2? certificate, SslPolicyErrors errors, X509Certificate2? extra, bool insecure)
    {
        if (insecure || errors == SslPolicyErrors.None)
        {
            return true;
        }

        if (extra is null || certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(extra);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }
}
