namespace Propeller.Proxy.Oci;

/// <summary>Static credentials for one registry host (PROXY_REGISTRY_URL): username and password, or a token.</summary>
public sealed record RegistryCredentials(string Host, string? Username, string? Password, string? Token);
