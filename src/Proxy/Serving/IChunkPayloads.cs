using System.Buffers;

namespace Propeller.Proxy.Serving;

/// <summary>The payloads of one artefact's chunks in one format, which a <see cref="ChunkPublication"/> publishes: the
/// original JSON (<see cref="ChunkBodies"/>, on <c>registry/server</c>) or raw bytes (<see cref="BinaryChunks"/>, on
/// <c>registry/chunk</c>).</summary>
internal interface IChunkPayloads
{
    ChunkLayout Layout { get; }

    /// <summary>Chunk <paramref name="index"/>'s bytes are in <paramref name="data"/> (the pull's array, the whole
    /// artefact's length, filled at least that far): make its payload ready.</summary>
    void Prepare(int index, byte[] data);

    /// <summary>The whole artefact is in <paramref name="data"/> (verified): make every payload ready.</summary>
    void PrepareAll(byte[] data);

    /// <summary>The payload of a prepared chunk <paramref name="index"/> for the request <paramref name="appName"/>,
    /// without copying the chunk.</summary>
    ReadOnlySequence<byte> Payload(string appName, int index);
}
