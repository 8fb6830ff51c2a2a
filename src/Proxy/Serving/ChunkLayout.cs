namespace Propeller.Proxy.Serving;

/// <summary>How an artefact of <paramref name="Size"/> bytes splits into chunks of <paramref name="ChunkSize"/> bytes
/// (PROXY_CHUNK_SIZE): <see cref="Total"/> chunks, each but the last full, in either chunk format.</summary>
public readonly record struct ChunkLayout(long Size, int ChunkSize)
{
    /// <summary>total_chunks: at least 1 (an empty artefact is one empty chunk, as the original sends it).</summary>
    public int Total => (int)Math.Max(1, (Size + ChunkSize - 1) / ChunkSize);

    /// <summary>The byte range of chunk <paramref name="index"/> within the artefact.</summary>
    public (long Offset, int Length) Range(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Total);
        var offset = (long)index * ChunkSize;
        return (offset, (int)Math.Min(ChunkSize, Size - offset));
    }
}
