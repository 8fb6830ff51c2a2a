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
    private readonly RecentEntries<(int Attempt, byte[] Payload)> _results =
        new(time, capacity, bytes, retention ?? AttemptMemory.DefaultRetention, static (id, result) => id.Length + result.Payload.Length);

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
                return _results.Count;
            }
        }
    }

    /// <summary>Keeps <paramref name="payload"/> (not copied: the caller never changes it), the result message just
    /// published for <paramref name="attempt"/> of task <paramref name="id"/>, in place of the one before (a result too
    /// large to keep forgets that one too).</summary>
    public void Record(string id, int attempt, byte[] payload)
    {
        lock (_lock)
        {
            if (payload.Length > LargestKept)
            {
                _results.Remove(id);
            }
            else
            {
                _results.Set(id, (attempt, payload));
            }
        }
    }

    /// <summary>The result message published for <paramref name="attempt"/> of task <paramref name="id"/>, if it is kept.</summary>
    public byte[]? Find(string id, int attempt)
    {
        lock (_lock)
        {
            return _results.TryGet(id, out var result) && result.Attempt == attempt ? result.Payload : null;
        }
    }
}
