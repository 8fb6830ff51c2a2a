namespace Propeller.Proxy.Serving;

/// <summary>
/// Pulled artefacts by layer digest, least recently used first out, holding at most <c>capacity</c> bytes
/// (PROXY_CACHE_BYTES; 0 turns it off). Content-addressed, so an entry is never stale. Thread-safe.
/// </summary>
public sealed class ArtifactCache(long capacity)
{
    private readonly Dictionary<string, LinkedListNode<Artifact>> _byDigest = new(StringComparer.Ordinal);
    private readonly LinkedList<Artifact> _order = new();
    private readonly Lock _lock = new();
    private long _bytes;

    public long Bytes
    {
        get
        {
            lock (_lock)
            {
                return _bytes;
            }
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _byDigest.Count;
            }
        }
    }

    public bool TryGet(string digest, out Artifact artifact)
    {
        lock (_lock)
        {
            if (_byDigest.TryGetValue(digest, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                artifact = node.Value;
                return true;
            }
        }

        artifact = null!;
        return false;
    }

    /// <summary>Adds <paramref name="artifact"/> and evicts the least recently used until the bound holds; one larger
    /// than the whole cache is not kept.</summary>
    public void Add(Artifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        if (artifact.Data.LongLength > capacity)
        {
            return;
        }

        lock (_lock)
        {
            if (_byDigest.ContainsKey(artifact.Digest))
            {
                return;
            }

            _byDigest[artifact.Digest] = _order.AddFirst(artifact);
            _bytes += artifact.Data.LongLength;
            while (_bytes > capacity && _order.Last is { } oldest)
            {
                _order.RemoveLast();
                _byDigest.Remove(oldest.Value.Digest);
                _bytes -= oldest.Value.Data.LongLength;
            }
        }
    }
}
