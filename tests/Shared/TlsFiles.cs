using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Propeller.Tests.Shared;

/// <summary>PEM files for TLS settings, written to <see cref="Directory"/>: a self-signed certificate, its key, a key of
/// another pair, and a file that is no PEM at all.</summary>
internal sealed class TlsFiles : IDisposable
{
    private readonly DirectoryInfo _dir = System.IO.Directory.CreateTempSubdirectory("tls-files");

    public TlsFiles()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=propeller-test", key, HashAlgorithmName.SHA256);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        Certificate = Write("cert.pem", certificate.ExportCertificatePem());
        Key = Write("key.pem", key.ExportPkcs8PrivateKeyPem());
        OtherKey = Write("other-key.pem", other.ExportPkcs8PrivateKeyPem());
        Garbage = Write("garbage.pem", "not a certificate\n");
    }

    public string Directory => _dir.FullName;

    public string Certificate { get; }

    public string Key { get; }

    public string OtherKey { get; }

    public string Garbage { get; }

    public void Dispose() => _dir.Delete(true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllText(path, text);
        return path;
    }
}
