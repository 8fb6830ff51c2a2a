using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Propeller.Broker;

/// <summary>TLS settings. Without a CA file the system trust store validates the broker certificate.</summary>
public sealed class BrokerTls
{
    /// <summary>PEM file with the CA certificate(s) that must sign the broker certificate.</summary>
    public string? CaFile { get; set; }

    /// <summary>PEM client certificate for mutual TLS; needs <see cref="ClientKeyFile"/>.</summary>
    public string? ClientCertificateFile { get; set; }

    /// <summary>PEM private key of the client certificate.</summary>
    public string? ClientKeyFile { get; set; }

    /// <summary>Accept any broker certificate (tests and labs only).</summary>
    public bool AllowUntrustedCertificates { get; set; }

    /// <summary>The certificates of CA file <paramref name="path"/> (PEM), as the connection trusts them.</summary>
    internal static X509Certificate2Collection LoadCaCertificates(string path)
    {
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(path);
        return collection;
    }

    /// <summary>The client certificate with its key, from PEM files, through PKCS#12: SslStream on Linux needs the key as
    /// part of a persisted certificate.</summary>
    internal static X509Certificate2 LoadClientCertificate(string certificateFile, string keyFile)
    {
        using var pem = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// Why <paramref name="path"/> cannot be the <see cref="CaFile"/> (it does not read, holds no PEM certificate or one
    /// that does not decode), or null. For the settings loaders: the connection reads it only once started, and failing
    /// there stopped the service with exit code 0, a line in its log the only trace.
    /// </summary>
    public static string? CaFileProblem(string path)
    {
        X509Certificate2Collection? collection = null;
        try
        {
            collection = LoadCaCertificates(path);
            return collection.Count == 0 ? "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)" : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            return ex.Message;
        }
        finally
        {
            foreach (var certificate in collection ?? [])
            {
                certificate.Dispose();
            }
        }
    }

    /// <summary>
    /// Why <paramref name="certificateFile"/> and <paramref name="keyFile"/> cannot be the client certificate and its key
    /// (either does not read or is not PEM, or the key is not the certificate's), or null; as <see cref="CaFileProblem"/>.
    /// </summary>
    public static string? ClientCertificateProblem(string certificateFile, string keyFile)
    {
        try
        {
            using var loaded = LoadClientCertificate(certificateFile, keyFile);
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            return ex.Message;
        }
    }
}
