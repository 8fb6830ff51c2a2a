using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>registry/proplet</c> (spec propeller-edge.md §1.13): a proplet asks the proxy for the image <c>app_name</c>.
/// <c>chunks</c> is our addition (docs/proxy.md): the indices a proplet still misses, so the proxy sends only those; the
/// original proxy ignores it and sends everything. Left out of the JSON when null.</summary>
public sealed record RegistryRequestMessage([property: JsonPropertyName("app_name")] string? AppName)
{
    [JsonPropertyName("chunks")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? Chunks { get; init; }
}
