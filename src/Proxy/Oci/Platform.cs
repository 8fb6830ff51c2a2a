using System.Text.Json.Serialization;

namespace Propeller.Proxy.Oci;

/// <summary>An index entry's platform.</summary>
public sealed record Platform(
    [property: JsonPropertyName("architecture")] string? Architecture,
    [property: JsonPropertyName("os")] string? Os)
{
    public override string ToString() => $"{Os}/{Architecture}";
}
