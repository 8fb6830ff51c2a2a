namespace Propeller.Proxy.Serving;

/// <summary>A pulled Wasm artefact: its layer digest, bytes and their sha256 (hex, sent in every chunk), and, once a
/// JSON publication needed them, its chunks encoded for the proxy's chunk size (<see cref="ChunkBodies"/>), which every
/// later JSON publication reuses. Binary publications (<see cref="BinaryChunks"/>) need only the bytes.</summary>
public sealed record Artifact(string Digest, byte[] Data, string Sha256)
{
    private ChunkBodies? _bodies;

    /// <summary>What the artefact holds in memory: its bytes and its encoded chunks if any (the cache's measure).</summary>
    public long Bytes => Data.LongLength + (Volatile.Read(ref _bodies)?.Bytes ?? 0);

    /// <summary>The chunks for <paramref name="chunkSize"/>: those attached, else encoded now (and kept).</summary>
    public ChunkBodies Bodies(int chunkSize)
    {
        var bodies = Volatile.Read(ref _bodies);
        if (bodies is null || bodies.ChunkSize != chunkSize)
        {
            bodies = ChunkBodies.EncodeAll(Data, Sha256, chunkSize);
            Volatile.Write(ref _bodies, bodies);
        }

        return bodies;
    }

    /// <summary>Keeps <paramref name="bodies"/> (encoded while the artefact was pulled) for later publications.</summary>
    public void Attach(ChunkBodies bodies)
    {
        ArgumentNullException.ThrowIfNull(bodies);
        Volatile.Write(ref _bodies, bodies);
    }
}
