using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>
/// <c>registry/chunk</c> (proxy → proplets), our addition (docs/proxy.md, issue 17): one chunk of the image
/// <c>app_name</c> as raw bytes, for a request whose <c>formats</c> named <see cref="RegistryRequestMessage.BinaryFormat"/>.
/// The payload is this header as one line of JSON, a newline (0x0A; JSON text never holds a raw one), then exactly
/// <c>length</c> bytes of the artefact. The fields are those of <see cref="ChunkMessage"/> without <c>data</c>; works on
/// MQTT 3.1.1 and 5 alike (no user properties). Old proplets neither subscribe to the topic nor match it by substring.
/// </summary>
public sealed record BinaryChunkHeader(
    [property: JsonPropertyName("app_name")] string? AppName,
    [property: JsonPropertyName("chunk_idx")] int ChunkIndex,
    [property: JsonPropertyName("total_chunks")] int TotalChunks,
    [property: JsonPropertyName("length")] int Length)
{
    /// <summary>The byte that ends the header.</summary>
    public const byte Separator = (byte)'\n';

    /// <summary>The hex SHA-256 of the whole artefact.</summary>
    [JsonPropertyName("sha256")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Sha256 { get; init; }

    /// <summary>The whole artefact's length in bytes.</summary>
    [JsonPropertyName("size")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? Size { get; init; }
}
