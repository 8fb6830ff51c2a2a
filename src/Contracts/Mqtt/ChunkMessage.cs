using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>registry/server</c> (spec propeller-edge.md §1.14): one base64 chunk of the image <c>app_name</c>.</summary>
public sealed record ChunkMessage(
    [property: JsonPropertyName("app_name")] string? AppName,
    [property: JsonPropertyName("chunk_idx")] int ChunkIndex,
    [property: JsonPropertyName("total_chunks")] int TotalChunks,
    [property: JsonPropertyName("data")] string? Data);
