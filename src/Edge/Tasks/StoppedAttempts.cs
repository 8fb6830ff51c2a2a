namespace Propeller.Edge.Tasks;

/// <summary>
/// For each task id, the highest attempt a stop named (our manager's additive <c>attempt</c>, docs/compatibility.md), so
/// that a start of that attempt arriving after its stop (a publish the manager retried, recovered after a crash or
/// replayed from its dead letters; a QoS 2 start delivered again) is not run. Bounded: at most <see cref="Capacity"/>
/// ids and <see cref="Characters"/> characters of them (the oldest go first), each forgotten <see cref="Retention"/>
/// after its last stop. The characters are bounded too because an id is whatever a stop names, up to the MQTT packet
/// size: 4096 stops of unknown ids of 1 MiB each kept 8 GiB. The manager's retries of a
/// publish end after about 36 s and a dead node's messages are sent by another within about 20 s, so 15 minutes covers
/// them with room; a start replayed by hand later than that runs, and the manager ignores its result (another attempt).
/// </summary>
internal sealed class StoppedAttempts(
    TimeProvider time, int capacity = StoppedAttempts.DefaultCapacity, TimeSpan? retention = null, long characters = StoppedAttempts.DefaultCharacters)
{
    public const int DefaultCapacity = 4096;

    /// <summary>1 Mi characters (2 MiB): 4096 ids of 256 characters; our manager's are UUIDs (36).</summary>
    public const long DefaultCharacters = 1 << 20;

    public static readonly TimeSpan DefaultRetention = TimeSpan.FromMinutes(15);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, (int Attempt, long At)> _stopped = new(StringComparer.Ordinal);

    private long _characters;

    public int Capacity { get; } = capacity;

    public long Characters { get; } = characters;

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

            if (!_stopped.ContainsKey(id))
            {
                _characters += id.Length;
            }

            _stopped[id] = (attempt, now);
            if (_stopped.Count > Capacity || _characters > Characters)
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

    /// <summary>Forgets the expired ids, then the oldest until the capacity and the characters are kept (a scan, only when
    /// full).</summary>
    private void Trim(long now)
    {
        foreach (var (id, known) in _stopped.ToList())
        {
            if (Expired(known.At, now))
            {
                Forget(id);
            }
        }

        while (_stopped.Count > Capacity || _characters > Characters)
        {
            Forget(_stopped.MinBy(p => p.Value.At).Key);
        }
    }

    private void Forget(string id)
    {
        if (_stopped.Remove(id))
        {
            _characters -= id.Length;
        }
    }
}
