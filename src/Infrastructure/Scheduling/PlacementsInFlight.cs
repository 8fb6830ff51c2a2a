using Propeller.Application.Scheduling;

namespace Propeller.Infrastructure.Scheduling;

/// <summary>
/// This node's dispatches that placement decided and whose transaction has not committed yet (one per node). The fleet's
/// load counts come from the task view, which holds a dispatch only from its commit on: without these, two rounds
/// planned before either committed (the start path and the "scheduling" queue's handlers run side by side) each read the
/// same loads and sent their tasks to the same least-loaded proplet. A dispatch leaves when its task's state commits
/// (<see cref="Settle"/>, from the session listener) or, when its transaction failed, after <see cref="Expiry"/>.
/// </summary>
public sealed class PlacementsInFlight(TimeProvider time)
{
    /// <summary>How long a dispatch whose commit was never announced (its transaction failed) keeps counting.</summary>
    public static readonly TimeSpan Expiry = TimeSpan.FromSeconds(5);

    private readonly Lock _gate = new();
    private readonly Dictionary<string, (string PropletId, DateTimeOffset Until)> _dispatches = new(StringComparer.Ordinal);

    /// <summary>How many dispatches are in flight (for tests).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _dispatches.Count;
            }
        }
    }

    /// <summary>The task of stream <paramref name="streamId"/> was planned onto <paramref name="propletId"/>; its transaction is to commit.</summary>
    public void Add(string streamId, string propletId)
    {
        lock (_gate)
        {
            _dispatches[streamId] = (propletId, time.GetUtcNow() + Expiry);
        }
    }

    /// <summary>The state of stream <paramref name="streamId"/> committed: the task view counts it from now on (or it was not dispatched).</summary>
    public void Settle(string streamId)
    {
        lock (_gate)
        {
            _dispatches.Remove(streamId);
        }
    }

    /// <summary>
    /// Adds the dispatches in flight to the load of their proplets among <paramref name="candidates"/> (read from the view
    /// just before). One that committed between that read and this call counts twice for that round: it steers a task
    /// away from a proplet that just got one, never onto it.
    /// </summary>
    public void CountIn(List<PropletCandidate> candidates)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var now = time.GetUtcNow();
        lock (_gate)
        {
            if (_dispatches.Count == 0)
            {
                return;
            }

            List<string>? expired = null;
            foreach (var (streamId, (propletId, until)) in _dispatches)
            {
                if (until <= now)
                {
                    (expired ??= []).Add(streamId);
                    continue;
                }

                PlacementPlanner.Count(candidates, propletId, +1);
            }

            foreach (var streamId in expired ?? [])
            {
                _dispatches.Remove(streamId);
            }
        }
    }
}
