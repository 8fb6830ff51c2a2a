using Propeller.Contracts.Mqtt;

namespace Propeller.Edge.Fetching;

/// <summary>
/// Assembles <c>registry/server</c> chunks by <c>app_name</c> (spec §3.1): the first chunk fixes <c>total_chunks</c>,
/// duplicates are ignored (first copy wins), completion = all indices present, chunks are joined in index order.
/// Added checks: an index outside 0..total-1, a non-positive or huge total, bad base64 or an assembly over the size
/// cap are rejected (with a reason). Waiters are woken on completion instead of polling every 5 s. Entries whose first
/// chunk is older than the TTL are dropped by <see cref="Sweep"/>. Thread-safe.
/// </summary>
public sealed class ChunkAssembler(long maxBinarySize, TimeProvider time)
{
    private const int MaxChunks = 100_000;
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<TaskCompletionSource<byte[]>>> _waiters = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>Entries currently held (partial, or complete and unclaimed).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Adds a chunk; returns null when accepted (or a harmless duplicate), else why it was rejected.</summary>
    public string? Add(ChunkMessage chunk)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        if (chunk.AppName is not { Length: > 0 } app)
        {
            return "app_name is required";
        }

        if (chunk.TotalChunks is <= 0 or > MaxChunks)
        {
            return $"total_chunks {chunk.TotalChunks} is out of range 1..{MaxChunks}";
        }

        if (chunk.ChunkIndex < 0 || chunk.ChunkIndex >= chunk.TotalChunks)
        {
            return $"chunk_idx {chunk.ChunkIndex} is out of range 0..{chunk.TotalChunks - 1}";
        }

        byte[] data;
        try
        {
            data = Convert.FromBase64String(chunk.Data ?? "");
        }
        catch (FormatException ex)
        {
            return $"data is not valid base64: {ex.Message}";
        }

        List<TaskCompletionSource<byte[]>>? waiters = null;
        byte[]? assembled = null;
        lock (_lock)
        {
            if (!_entries.TryGetValue(app, out var entry))
            {
                entry = new Entry(chunk.TotalChunks, time.GetUtcNow());
                _entries[app] = entry;
            }

            if (entry.Complete is not null)
            {
                return null; // a re-delivery of an image already assembled
            }

            if (entry.Total != chunk.TotalChunks)
            {
                return $"total_chunks {chunk.TotalChunks} differs from the first chunk's {entry.Total}";
            }

            if (!entry.Chunks.TryAdd(chunk.ChunkIndex, data))
            {
                return null;
            }

            entry.Size += data.Length;
            if (entry.Size > maxBinarySize)
            {
                _entries.Remove(app);
                Fail(app, $"image {app} is larger than the {maxBinarySize} byte limit");
                return $"assembly exceeds {maxBinarySize} bytes; dropped";
            }

            if (entry.Chunks.Count < entry.Total)
            {
                return null;
            }

            assembled = new byte[entry.Size];
            var offset = 0;
            foreach (var part in entry.Chunks.Values)
            {
                part.CopyTo(assembled, offset);
                offset += part.Length;
            }

            if (_waiters.Remove(app, out waiters))
            {
                _entries.Remove(app);
            }
            else
            {
                // Nobody asked (yet): keep it for a request that comes within the TTL (spec §3.2).
                entry.Complete = assembled;
                entry.Chunks.Clear();
            }
        }

        foreach (var waiter in waiters ?? [])
        {
            waiter.TrySetResult(assembled);
        }

        return null;
    }

    /// <summary>Waits for the image <paramref name="app"/>: at once when a complete copy is held, else until its chunks
    /// arrive. <paramref name="request"/> is called (once) after the waiter is registered, to ask the proxy.</summary>
    public async Task<byte[]> WaitAsync(string app, Func<CancellationToken, Task> request, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var waiter = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_entries.TryGetValue(app, out var entry) && entry.Complete is { } ready)
            {
                _entries.Remove(app);
                return ready;
            }

            if (!_waiters.TryGetValue(app, out var list))
            {
                list = [];
                _waiters[app] = list;
            }

            list.Add(waiter);
        }

        try
        {
            await request(cancellationToken);
            return await waiter.Task.WaitAsync(timeout, time, cancellationToken);
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException("Timeout waiting for binary chunks", ex);
        }
        finally
        {
            lock (_lock)
            {
                if (_waiters.TryGetValue(app, out var list) && list.Remove(waiter) && list.Count == 0)
                {
                    _waiters.Remove(app);
                }
            }
        }
    }

    /// <summary>Drops entries whose first chunk is older than <paramref name="ttl"/>; returns what was dropped
    /// (app name, chunks received, total) for logging.</summary>
    public IReadOnlyList<(string App, int Received, int Total)> Sweep(TimeSpan ttl)
    {
        var now = time.GetUtcNow();
        var dropped = new List<(string, int, int)>();
        lock (_lock)
        {
            foreach (var (app, entry) in _entries.Where(e => now - e.Value.CreatedAt > ttl).ToList())
            {
                _entries.Remove(app);
                dropped.Add((app, entry.Complete is null ? entry.Chunks.Count : entry.Total, entry.Total));
            }
        }

        return dropped;
    }

    private void Fail(string app, string reason)
    {
        if (_waiters.Remove(app, out var waiters))
        {
            foreach (var waiter in waiters)
            {
                waiter.TrySetException(new InvalidDataException(reason));
            }
        }
    }

    private sealed class Entry(int total, DateTimeOffset createdAt)
    {
        public int Total { get; } = total;

        public DateTimeOffset CreatedAt { get; } = createdAt;

        public SortedDictionary<int, byte[]> Chunks { get; } = [];

        public long Size { get; set; }

        public byte[]? Complete { get; set; }
    }
}
