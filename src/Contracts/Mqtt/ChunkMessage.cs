using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>registry/server</c> (spec propeller-edge.md §1.14): one base64 chunk of the image <c>app_name</c>.
/// <c>sha256</c> (hex digest of the whole artefact) is our addition (docs/proxy.md): old proplets ignore it, ours verify
/// the assembled module against it; it is left out of the JSON when null, so the original's shape is kept. <c>size</c>
/// (the artefact's length in bytes, also ours and additive) lets our proplet decode every chunk straight into place.</summary>
public sealed record ChunkMessage(
    [property: JsonPropertyName("app_name")] string? AppName,
    [property: JsonPropertyName("chunk_idx")] int ChunkIndex,
    [property: JsonPropertyName("total_chunks")] int TotalChunks,
    [property: JsonPropertyName("data")] string? Data)
{
    [JsonPropertyName("sha256")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Sha256 { get; init; }

    [JsonPropertyName("size")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? Size { get; init; }
}
