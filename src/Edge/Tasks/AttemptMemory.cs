namespace Propeller.Edge.Tasks;

/// <summary>
/// For each task id, the highest attempt that ended here in some way (our manager's additive <c>attempt</c>,
/// docs/compatibility.md), so that a start of that attempt arriving afterwards is not run. The task runner keeps two:
/// the attempts a stop named (a start arriving after its stop: a publish the manager retried, recovered after a crash or
/// replayed from its dead letters, a QoS 2 start delivered again) and the attempts that finished here (a QoS 1 start
/// delivered again, or a start the manager sent again because this proplet's report of what it holds, taken before the
/// first copy arrived, lacked it). Bounded: at most <see cref="Capacity"/> ids and <see cref="Characters"/> characters
/// of them (the oldest go first), each forgotten <see cref="Retention"/> after it was last recorded. The characters are
/// bounded too because an id is whatever a stop names, up to the MQTT packet size: 4096 stops of unknown ids of 1 MiB
/// each kept 8 GiB. The manager's retries of a publish end after about 36 s and a dead node's messages are sent by
/// another within about 20 s, so 15 minutes covers them with room; a start replayed by hand later than that runs, and the
/// manager ignores its result (another attempt).
/// </summary>
internal sealed class AttemptMemory(
    TimeProvider time, int capacity = AttemptMemory.DefaultCapacity, TimeSpan? retention = null, long characters = AttemptMemory.DefaultCharacters)
{
    public const int DefaultCapacity = 4096;

    /// <summary>1 Mi characters (2 MiB): 4096 ids of 256 characters; our manager's are UUIDs (36).</summary>
    public const long DefaultCharacters = 1 << 20;

    public static readonly TimeSpan DefaultRetention = TimeSpan.FromMinutes(15);

    private readonly Lock _lock = new();
    private readonly RecentEntries<Run> _runs = new(time, capacity, characters, retention ?? DefaultRetention, static (id, _) => id.Length);

    public int Capacity { get; } = capacity;

    public long Characters { get; } = characters;

    public TimeSpan Retention { get; } = retention ?? DefaultRetention;

    /// <summary>Every dispatch of <paramref name="attempt"/> of task <paramref name="id"/> ended here (a stop names an attempt).</summary>
    public void Record(string id, int attempt) => Record(id, Run.Every(attempt));

    /// <summary><paramref name="run"/> of task <paramref name="id"/> ended here (a later run recorded before is kept).</summary>
    public void Record(string id, Run run)
    {
        lock (_lock)
        {
            _runs.Set(id, _runs.TryGet(id, out var known) && !known.IsAtMost(run) ? known : run);
        }
    }

    /// <summary>Whether every dispatch of <paramref name="attempt"/> of task <paramref name="id"/>, or of a later one, was recorded.</summary>
    public bool Covers(string id, int attempt) => Covers(id, new Run(attempt, 0));

    /// <summary>Whether <paramref name="run"/> of task <paramref name="id"/>, or a later one, was recorded.</summary>
    public bool Covers(string id, Run run)
    {
        lock (_lock)
        {
            return _runs.TryGet(id, out var known) && run.IsAtMost(known);
        }
    }
}

/// <summary>
/// One run of a task: its attempt and, within it, the dispatch (our manager's additive <c>dispatch</c>: a re-dispatch
/// after its proplet went away keeps the attempt and counts up the dispatch). Ordered by attempt, then dispatch (<see cref="IsAtMost"/>).
/// </summary>
internal readonly record struct Run(int Attempt, int Dispatch)
{
    /// <summary>Every dispatch of <paramref name="attempt"/> (what a stop ends).</summary>
    public static Run Every(int attempt) => new(attempt, int.MaxValue);

    /// <summary>Whether this run is <paramref name="other"/> or one before it.</summary>
    public bool IsAtMost(Run other) => Attempt != other.Attempt ? Attempt < other.Attempt : Dispatch <= other.Dispatch;

    /// <summary>Whether this run is a later dispatch of <paramref name="earlier"/>'s attempt (the task dispatched back to a
    /// proplet that still has the earlier one: that one becomes this).</summary>
    public bool IsLaterDispatchOf(Run? earlier) => earlier is { } other && Attempt == other.Attempt && Dispatch > other.Dispatch;
}
