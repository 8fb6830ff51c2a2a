using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Propeller.Broker;

namespace Propeller.Proxy.Serving;

/// <summary>
/// The <c>registry/server</c> chunks of one artefact for one chunk size, encoded once and published as often as asked
/// (issue 17's benchmark: encoding every publication again was a third of the proxy's CPU). Each chunk's base64 text is
/// kept; a payload is that text between a small per-request prefix (<c>{"app_name":…,"chunk_idx":…,"total_chunks":…,
/// "data":"</c>) and the artefact's suffix (<c>","sha256":"…","size":…}</c>), handed to MQTTnet as a three-segment sequence, so
/// no publication copies or allocates the chunk. The bytes are the same as one <see cref="Utf8JsonWriter"/> pass writes
/// (<see cref="ProxyNode.ChunkJson"/>). Chunks may be encoded in any order, as they arrive (<see cref="Encode"/>);
/// thread-safe for one writer per index and any readers of encoded indices.
/// </summary>
public sealed class ChunkBodies : IChunkPayloads
{
    private static readonly JsonEncodedText AppNameField = JsonEncodedText.Encode("app_name");
    private static readonly JsonEncodedText ChunkIndexField = JsonEncodedText.Encode("chunk_idx");
    private static readonly JsonEncodedText TotalChunksField = JsonEncodedText.Encode("total_chunks");
    private static readonly JsonEncodedText DataField = JsonEncodedText.Encode("data");
    private readonly byte[]?[] _bodies;
    private readonly byte[] _suffix;
    private long _bytes;

    public ChunkBodies(long size, string sha256, int chunkSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkSize);
        ArgumentNullException.ThrowIfNull(sha256);
        Layout = new ChunkLayout(size, chunkSize);
        Total = Layout.Total;
        _bodies = new byte[Total][];
        _suffix = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"\",\"sha256\":\"{sha256}\",\"size\":{size}}}"));
    }

    public ChunkLayout Layout { get; }

    /// <summary>The artefact's length in bytes.</summary>
    public long Size => Layout.Size;

    public int ChunkSize => Layout.ChunkSize;

    /// <summary>total_chunks (<see cref="ChunkLayout.Total"/>).</summary>
    public int Total { get; }

    /// <summary>The base64 bytes encoded so far (what these bodies add to the cache).</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Encodes every chunk of <paramref name="data"/>.</summary>
    public static ChunkBodies EncodeAll(byte[] data, string sha256, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(data);
        var bodies = new ChunkBodies(data.LongLength, sha256, chunkSize);
        for (var i = 0; i < bodies.Total; i++)
        {
            bodies.Encode(i, data);
        }

        return bodies;
    }

    /// <summary>Encodes chunk <paramref name="index"/> from the artefact's bytes (<paramref name="data"/> holds at least
    /// that chunk's range) into one exactly sized array, straight from the bytes.</summary>
    public void Encode(int index, ReadOnlySpan<byte> data)
    {
        var (offset, length) = Layout.Range(index);
        var source = data.Slice((int)offset, length);
        var body = GC.AllocateUninitializedArray<byte>(Base64.GetMaxEncodedToUtf8Length(length));
        Base64.EncodeToUtf8(source, body, out _, out var written);
        if (Interlocked.Exchange(ref _bodies[index], body) is null)
        {
            Interlocked.Add(ref _bytes, written);
        }
    }

    /// <summary>Encodes the chunks not encoded yet, from all of the artefact's bytes.</summary>
    public void EncodeMissing(ReadOnlySpan<byte> data)
    {
        for (var i = 0; i < Total; i++)
        {
            if (!IsEncoded(i))
            {
                Encode(i, data);
            }
        }
    }

    void IChunkPayloads.Prepare(int index, byte[] data) => Encode(index, data);

    void IChunkPayloads.PrepareAll(byte[] data) => EncodeMissing(data);

    public bool IsEncoded(int index) => Volatile.Read(ref _bodies[index]) is not null;

    /// <summary>The payload of chunk <paramref name="index"/> for the request <paramref name="appName"/>, without copying
    /// the chunk: prefix, base64 text, suffix.</summary>
    public ReadOnlySequence<byte> Payload(string appName, int index)
    {
        var body = Volatile.Read(ref _bodies[index]) ?? throw new InvalidOperationException($"chunk {index} is not encoded yet");
        return PayloadSequence.Of(Prefix(appName, index, Total), body, _suffix);
    }

    /// <summary><c>{"app_name":"…","chunk_idx":i,"total_chunks":n,"data":"</c>, escaped as <see cref="Utf8JsonWriter"/>
    /// escapes the name.</summary>
    private static byte[] Prefix(string appName, int index, int total)
    {
        var buffer = new ArrayBufferWriter<byte>(appName.Length + 96);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString(AppNameField, appName);
            writer.WriteNumber(ChunkIndexField, index);
            writer.WriteNumber(TotalChunksField, total);
            writer.WritePropertyName(DataField);
        }

        buffer.Write("\""u8);
        return buffer.WrittenSpan.ToArray();
    }
}
