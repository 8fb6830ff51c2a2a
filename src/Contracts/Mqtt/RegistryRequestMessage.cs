using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>registry/proplet</c> (spec propeller-edge.md §1.13): a proplet asks the proxy for the image <c>app_name</c>.
/// <c>chunks</c> is our addition (docs/proxy.md): the indices a proplet still misses, so the proxy sends only those; the
/// original proxy ignores it and sends everything. <c>have</c>, ours too: the sha256 (hex) of images the proplet holds
/// verified; when the image resolves to one of them our proxy publishes one chunk only (enough to announce the digest).
/// Both are left out of the JSON when null.</summary>
public sealed record RegistryRequestMessage([property: JsonPropertyName("app_name")] string? AppName)
{
    [JsonPropertyName("chunks")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? Chunks { get; init; }

    [JsonPropertyName("have")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Have { get; init; }
}
