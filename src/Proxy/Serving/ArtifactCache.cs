namespace Propeller.Proxy.Serving;

/// <summary>
/// Pulled artefacts by layer digest, least recently used first out, holding at most <c>capacity</c> bytes
/// (PROXY_CACHE_BYTES; 0 turns it off), counted as <see cref="Artifact.Bytes"/>: the artefact and its encoded chunks, if
/// a JSON publication encoded them (<see cref="Remeasure"/> counts chunks encoded after the artefact entered).
/// Content-addressed, so an entry is never stale. Thread-safe.
/// </summary>
public sealed class ArtifactCache(long capacity)
{
    private readonly Dictionary<string, LinkedListNode<Entry>> _byDigest = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> _order = new();
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
                artifact = node.Value.Artifact;
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
        var bytes = artifact.Bytes;
        if (bytes > capacity)
        {
            return;
        }

        lock (_lock)
        {
            if (_byDigest.ContainsKey(artifact.Digest))
            {
                return;
            }

            _byDigest[artifact.Digest] = _order.AddFirst(new Entry(artifact, bytes));
            _bytes += bytes;
            Evict();
        }
    }

    /// <summary>Counts <paramref name="artifact"/> again at its <see cref="Artifact.Bytes"/> (its JSON chunks were encoded
    /// since it entered) and evicts the least recently used until the bound holds (the artefact itself last, if it alone
    /// is over it). Nothing happens for an artefact not held.</summary>
    public void Remeasure(Artifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        lock (_lock)
        {
            if (!_byDigest.TryGetValue(artifact.Digest, out var node) || !ReferenceEquals(node.Value.Artifact, artifact) || node.Value.Bytes == artifact.Bytes)
            {
                return;
            }

            _bytes += artifact.Bytes - node.Value.Bytes;
            node.Value = node.Value with { Bytes = artifact.Bytes };
            _order.Remove(node);
            _order.AddFirst(node);
            Evict();
        }
    }

    /// <summary>Drops the least recently used until the bound holds; called under the lock.</summary>
    private void Evict()
    {
        while (_bytes > capacity && _order.Last is { } oldest)
        {
            _order.RemoveLast();
            _byDigest.Remove(oldest.Value.Artifact.Digest);
            _bytes -= oldest.Value.Bytes;
        }
    }

    /// <summary>An artefact with the size it was counted at (its encoded chunks may be attached or replaced later).</summary>
    private sealed record Entry(Artifact Artifact, long Bytes);
}
