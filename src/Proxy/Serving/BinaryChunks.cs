using System.Buffers;
using System.Text.Json;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;

namespace Propeller.Proxy.Serving;

/// <summary>
/// The <c>registry/chunk</c> chunks of one artefact (issue 17, docs/proxy.md): each payload is a one-line JSON
/// <see cref="BinaryChunkHeader"/>, a newline and the chunk's bytes, handed to MQTTnet as two segments, the second a slice
/// of the artefact's own array (no base64, no copy, nothing kept beside the artefact). Thread-safe.
/// </summary>
internal sealed class BinaryChunks(ChunkLayout layout, string sha256) : IChunkPayloads
{
    private byte[]? _data;

    /// <summary>The chunks of an artefact whose bytes are all here.</summary>
    public BinaryChunks(byte[] data, string sha256, int chunkSize)
        : this(new ChunkLayout(data?.LongLength ?? 0, chunkSize), sha256) => _data = data;

    public ChunkLayout Layout => layout;

    public void Prepare(int index, byte[] data) => Volatile.Write(ref _data, data);

    public void PrepareAll(byte[] data) => Volatile.Write(ref _data, data);

    public ReadOnlySequence<byte> Payload(string appName, int index)
    {
        var data = Volatile.Read(ref _data) ?? throw new InvalidOperationException($"chunk {index} has not arrived yet");
        var (offset, length) = layout.Range(index);
        var header = new ArrayBufferWriter<byte>(appName.Length + 160);
        using (var writer = new Utf8JsonWriter(header))
        {
            JsonSerializer.Serialize(writer, new BinaryChunkHeader(appName, index, layout.Total, length) { Sha256 = sha256, Size = layout.Size });
        }

        header.Write([BinaryChunkHeader.Separator]);
        return PayloadSequence.Of(header.WrittenMemory, data.AsMemory((int)offset, length));
    }
}
