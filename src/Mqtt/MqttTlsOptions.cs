namespace Propeller.Mqtt;

/// <summary>TLS settings. Without a CA file the system trust store validates the broker certificate.</summary>
public sealed class MqttTlsOptions
{
    /// <summary>PEM file with the CA certificate(s) that must sign the broker certificate.</summary>
    public string? CaFile { get; set; }

    /// <summary>PEM client certificate for mutual TLS; needs <see cref="ClientKeyFile"/>.</summary>
    public string? ClientCertificateFile { get; set; }

    /// <summary>PEM private key of the client certificate.</summary>
    public string? ClientKeyFile { get; set; }

    /// <summary>Accept any broker certificate (tests and labs only).</summary>
    public bool AllowUntrustedCertificates { get; set; }

    /// <summary>Name checked against the broker certificate; defaults to the host name.</summary>
    public string? TargetHost { get; set; }
}
