namespace Propeller.Edge.Tasks;

/// <summary>
/// For each task id, the highest attempt a stop named (our manager's additive <c>attempt</c>, docs/compatibility.md), so
/// that a start of that attempt arriving after its stop (a publish the manager retried, recovered after a crash or
/// replayed from its dead letters; a QoS 2 start delivered again) is not run. Bounded: at most <see cref="Capacity"/>
/// ids (the oldest go first), each forgotten <see cref="Retention"/> after its last stop. The manager's retries of a
/// publish end after about 36 s and a dead node's messages are sent by another within about 20 s, so 15 minutes covers
/// them with room; a start replayed by hand later than that runs, and the manager ignores its result (another attempt).
/// </summary>
internal sealed class StoppedAttempts(TimeProvider time, int capacity = StoppedAttempts.DefaultCapacity, TimeSpan? retention = null)
{
    public const int DefaultCapacity = 4096;

    public static readonly TimeSpan DefaultRetention = TimeSpan.FromMinutes(15);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, (int Attempt, long At)> _stopped = new(StringComparer.Ordinal);

    public int Capacity { get; } = capacity;

    public TimeSpan Retention { get; } = retention ?? DefaultRetention;

    /// <summary>A stop of <paramref name="attempt"/> of task <paramref name="id"/> arrived.</summary>
    public void Record(string id, int attempt)
    {
        lock (_lock)
        {
            var now = time.GetTimestamp();
            if (_stopped.TryGetValue(id, out var known) && !Expired(known.At, now) && known.Attempt > attempt)
            {
                attempt = known.Attempt;
            }

            _stopped[id] = (attempt, now);
            if (_stopped.Count > Capacity)
            {
                Trim(now);
            }
        }
    }

    /// <summary>Whether a stop named <paramref name="attempt"/> of task <paramref name="id"/>, or a later one.</summary>
    public bool Covers(string id, int attempt)
    {
        lock (_lock)
        {
            return _stopped.TryGetValue(id, out var known) && !Expired(known.At, time.GetTimestamp()) && attempt <= known.Attempt;
        }
    }

    private bool Expired(long at, long now) => time.GetElapsedTime(at, now) >= Retention;

    /// <summary>Forgets the expired ids, then the oldest until the capacity is kept (a scan, only when full).</summary>
    private void Trim(long now)
    {
        foreach (var (id, known) in _stopped.ToList())
        {
            if (Expired(known.At, now))
            {
                _stopped.Remove(id);
            }
        }

        while (_stopped.Count > Capacity)
        {
            _stopped.Remove(_stopped.MinBy(p => p.Value.At).Key);
        }
    }
}
