using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>registry/proplet</c> (spec propeller-edge.md §1.13): a proplet asks the proxy for the image <c>app_name</c>.
/// <c>chunks</c> is our addition (docs/proxy.md): the indices a proplet still misses, so the proxy sends only those; the
/// original proxy ignores it and sends everything. <c>have</c>, ours too: the sha256 (hex) of images the proplet holds
/// verified; when the image resolves to one of them our proxy publishes one chunk only (enough to announce the digest).
/// <c>formats</c>, ours too: the chunk formats the proplet reads besides the original JSON; with <see cref="BinaryFormat"/>
/// our proxy publishes raw-bytes chunks on <c>registry/chunk</c> (<see cref="BinaryChunkHeader"/>) instead. All three are
/// left out of the JSON when null.</summary>
public sealed record RegistryRequestMessage([property: JsonPropertyName("app_name")] string? AppName)
{
    /// <summary>The <c>formats</c> entry that asks for binary chunks.</summary>
    public const string BinaryFormat = "binary";

    [JsonPropertyName("chunks")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? Chunks { get; init; }

    [JsonPropertyName("have")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Have { get; init; }

    [JsonPropertyName("formats")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Formats { get; init; }
}
