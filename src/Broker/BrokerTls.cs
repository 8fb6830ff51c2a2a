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
}
