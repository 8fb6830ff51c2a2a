namespace Propeller.Edge.Tasks;

/// <summary>
/// The result message this proplet last published for each task, with the attempt it named, so that a start of a run
/// that finished here is answered with that run's result again instead of being dropped. The manager sends a start
/// again when this proplet's report of what it holds lacks a task it has running here; when the run did finish here,
/// its result was lost on the way (published, acknowledged by the broker, and lost when the broker crashed before
/// handing it on; or published into a connection that was closing), and without it the task stayed Running until the
/// manager gave up sending and re-dispatched it, minutes later. Bounded: at most <see cref="Capacity"/> results and
/// <see cref="Bytes"/> bytes of them (the oldest go first), none larger than <see cref="LargestKept"/> (such a run's
/// start is dropped as before: the manager re-dispatches the task after its third send), each forgotten
/// <see cref="Retention"/> after it was published (as <see cref="AttemptMemory"/> forgets the run).
/// </summary>
internal sealed class FinishedResults(TimeProvider time, int capacity = 16384, long bytes = 16L << 20, int largestKept = 256 << 10, TimeSpan? retention = null)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedListNode<Entry>> _byTask = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> _oldestFirst = new();
    private long _bytes;

    public int Capacity { get; } = capacity;

    public long Bytes { get; } = bytes;

    public int LargestKept { get; } = largestKept;

    public TimeSpan Retention { get; } = retention ?? AttemptMemory.DefaultRetention;

    /// <summary>How many results are kept now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _byTask.Count;
            }
        }
    }

    /// <summary>Keeps <paramref name="payload"/>, the result message just published for <paramref name="attempt"/> of
    /// task <paramref name="id"/>, in place of the one before (a result too large to keep forgets that one too).</summary>
    public void Record(string id, int attempt, ReadOnlyMemory<byte> payload)
    {
        lock (_lock)
        {
            Forget(id);
            if (payload.Length > LargestKept)
            {
                return;
            }

            var now = time.GetTimestamp();
            _byTask[id] = _oldestFirst.AddLast(new Entry(id, attempt, payload.ToArray(), now));
            _bytes += payload.Length + id.Length;
            while (_oldestFirst.First is { } oldest && (_byTask.Count > Capacity || _bytes > Bytes || Expired(oldest.Value.At, now)))
            {
                Forget(oldest.Value.Id);
            }
        }
    }

    /// <summary>The result message published for <paramref name="attempt"/> of task <paramref name="id"/>, if it is kept.</summary>
    public byte[]? Find(string id, int attempt)
    {
        lock (_lock)
        {
            return _byTask.TryGetValue(id, out var node) && node.Value.Attempt == attempt && !Expired(node.Value.At, time.GetTimestamp())
                ? node.Value.Payload
                : null;
        }
    }

    private bool Expired(long at, long now) => time.GetElapsedTime(at, now) >= Retention;

    private void Forget(string id)
    {
        if (_byTask.Remove(id, out var node))
        {
            _oldestFirst.Remove(node);
            _bytes -= node.Value.Payload.Length + id.Length;
        }
    }

    private sealed record Entry(string Id, int Attempt, byte[] Payload, long At);
}
