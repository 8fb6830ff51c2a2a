using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Propeller.Broker.Tests;

/// <summary>A throw-away CA, a broker certificate (localhost, 127.0.0.1) and a client certificate, written as PEM files.</summary>
internal static class TestCertificates
{
    public static (string CaFile, string ServerCert, string ServerKey, string ClientCert, string ClientKey) Write(string directory)
    {
        var now = DateTimeOffset.UtcNow.AddMinutes(-5);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=Propeller Test CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using var ca = caRequest.CreateSelfSigned(now, now.AddDays(1));

        var caFile = Path.Combine(directory, "ca.pem");
        File.WriteAllText(caFile, ca.ExportCertificatePem());
        var (serverCert, serverKey) = Issue(ca, directory, "server", "CN=localhost", serverAuth: true, now);
        var (clientCert, clientKey) = Issue(ca, directory, "client", "CN=proplet-1", serverAuth: false, now);
        return (caFile, serverCert, serverKey, clientCert, clientKey);
    }

    /// <summary>
    /// A root CA, an intermediate CA it signed, and a broker certificate the intermediate signed: the CA file holds the
    /// root only, the broker's certificate file the leaf and the intermediate (what the broker presents).
    /// </summary>
    public static (string RootFile, string ServerChain, string ServerKey) WriteWithIntermediate(string directory)
    {
        var now = DateTimeOffset.UtcNow.AddMinutes(-5);
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var root = Authority("CN=Propeller Test Root", rootKey).CreateSelfSigned(now, now.AddDays(1));
        using var intermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var serial = new byte[12];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7F;
        using var signed = Authority("CN=Propeller Test Intermediate", intermediateKey).Create(root, now, now.AddDays(1), serial);
        using var intermediate = signed.CopyWithPrivateKey(intermediateKey);
        var rootFile = Path.Combine(directory, "root.pem");
        File.WriteAllText(rootFile, root.ExportCertificatePem());
        var (leaf, key) = Issue(intermediate, directory, "server-via-intermediate", "CN=localhost", serverAuth: true, now);
        var chainFile = Path.Combine(directory, "server-chain.pem");
        File.WriteAllText(chainFile, File.ReadAllText(leaf) + "\n" + intermediate.ExportCertificatePem() + "\n");
        return (rootFile, chainFile, key);
    }

    private static CertificateRequest Authority(string subject, ECDsa key)
    {
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request;
    }

    private static (string Cert, string Key) Issue(X509Certificate2 ca, string directory, string name, string subject, bool serverAuth, DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [serverAuth ? new Oid("1.3.6.1.5.5.7.3.1") : new Oid("1.3.6.1.5.5.7.3.2")], false));
        if (serverAuth)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName("localhost");
            names.AddIpAddress(IPAddress.Loopback);
            request.CertificateExtensions.Add(names.Build());
        }

        var serial = new byte[12];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7F;
        using var certificate = request.Create(ca, now, now.AddDays(1), serial);
        var certFile = Path.Combine(directory, $"{name}.pem");
        var keyFile = Path.Combine(directory, $"{name}.key");
        File.WriteAllText(certFile, certificate.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        return (certFile, keyFile);
    }
}
