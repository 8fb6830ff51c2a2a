namespace Propeller.Application.Scheduling;

/// <summary>
/// Round-robin positions, one per set of eligible proplets: tasks that may run on different sets (tags, memory, a
/// plugin narrowing the candidates) each rotate over their own set. With one shared position, tasks alternating
/// between two sets of two advanced it by two each round and always landed on the same member of each set. Not
/// thread-safe: the caller serialises placement. Bounded: past <see cref="Capacity"/> sets it starts over.
/// </summary>
public sealed class RoundRobinCursors
{
    public const int Capacity = 1024;

    private readonly Dictionary<string, long> _positions = new(StringComparer.Ordinal);

    /// <summary>The index in <paramref name="eligible"/> (the set, in a fixed order) whose turn it is; moves the set's position on.</summary>
    public int Next(IReadOnlyList<PropletCandidate> eligible)
    {
        ArgumentNullException.ThrowIfNull(eligible);
        if (eligible.Count == 0)
        {
            throw new ArgumentException("no eligible proplet", nameof(eligible));
        }

        var key = string.Join('\n', eligible.Select(p => p.Id));
        if (!_positions.TryGetValue(key, out var position) && _positions.Count >= Capacity)
        {
            _positions.Clear();
        }

        _positions[key] = position + 1;
        return (int)(position % eligible.Count);
    }
}
