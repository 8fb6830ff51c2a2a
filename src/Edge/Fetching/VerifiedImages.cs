namespace Propeller.Edge.Fetching;

/// <summary>
/// Images this proplet assembled from <c>registry/server</c> chunks and verified against their sha256, by that digest,
/// within a byte bound (PROPLET_IMAGE_CACHE_BYTES; least recently used out; 0 keeps none). A later delivery whose chunks
/// announce a digest held here needs none of its bytes: <see cref="ChunkAssembler"/> hands the held image to the waiter
/// at the first chunk (issue 17, docs/proxy.md). Sound because the held bytes hashed to that digest when they were
/// verified and nothing writes them afterwards, so the proplet runs bytes with exactly the digest the proxy announced,
/// as it would after assembling and hashing the delivery again. Not thread-safe: used under the assembler's lock.
/// </summary>
internal sealed class VerifiedImages(long capacity)
{
    private readonly Dictionary<string, LinkedListNode<FetchedBinary>> _byDigest = new(StringComparer.Ordinal);
    private readonly LinkedList<FetchedBinary> _recent = [];
    private long _bytes;

    /// <summary>The bytes held.</summary>
    public long Bytes => _bytes;

    /// <summary>The image whose sha256 (hex, any case) is <paramref name="sha256"/>, when held and, if
    /// <paramref name="size"/> is announced, of that length.</summary>
    public bool TryGet(string sha256, long? size, out FetchedBinary image)
    {
        image = null!;
        if (capacity <= 0 || sha256.Length != 64 || !_byDigest.TryGetValue(sha256.ToLowerInvariant(), out var node)
            || (size is { } announced && announced != node.Value.Bytes.LongLength))
        {
            return false;
        }

        _recent.Remove(node);
        _recent.AddFirst(node);
        image = node.Value;
        return true;
    }

    /// <summary>The digests held, most recently used first, at most <paramref name="max"/>.</summary>
    public List<string> Digests(int max) => [.. _recent.Take(max).Select(image => image.Sha256!)];

    /// <summary>Holds <paramref name="image"/>, verified against its (lowercase hex) <see cref="FetchedBinary.Sha256"/>;
    /// an image larger than the bound is not held, older ones make room.</summary>
    public void Add(FetchedBinary image)
    {
        if (image.Sha256 is not { Length: 64 } sha256 || image.Bytes.LongLength > capacity || _byDigest.ContainsKey(sha256))
        {
            return;
        }

        while (_bytes + image.Bytes.LongLength > capacity && _recent.Last is { } oldest)
        {
            _recent.RemoveLast();
            _byDigest.Remove(oldest.Value.Sha256!);
            _bytes -= oldest.Value.Bytes.LongLength;
        }

        _byDigest[sha256] = _recent.AddFirst(image);
        _bytes += image.Bytes.LongLength;
    }
}
