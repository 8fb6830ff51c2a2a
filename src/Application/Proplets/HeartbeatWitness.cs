namespace Propeller.Application.Proplets;

/// <summary>
/// Since when this manager node has been able to hear the proplets' heartbeats and record them, so that a liveness
/// check takes silence for a proplet's death only when the node could have heard and recorded a heartbeat and did not:
/// <list type="bullet">
/// <item>while the node's broker connection is down nothing can be heard; after it comes back (the broker or the
/// manager restarted) each proplet has the time it may need to reconnect (its backoff) and then a whole window to be
/// heard again;</item>
/// <item>while proplet messages cannot be stored (PostgreSQL unreachable) heartbeats are not recorded; once storing
/// works again, each proplet has a whole window from that moment;</item>
/// <item>while a message waits to be handled (its effect slow to commit: an overloaded or slow PostgreSQL, a lock), the
/// messages after it wait too once the node's receive window is full, heartbeats among them: heard, not recorded. The
/// node has recorded what it heard only up to that message's arrival, so silence is judged up to then (the last sign
/// moves on by the time the message has waited).</item>
/// </list>
/// Without it, a proplet running a task through an outage longer than the liveness window was marked offline when the
/// outage ended and its task dispatched a second time. Per node, in memory: every node receives every heartbeat
/// (<c>control/proplet/alive</c> is not a shared subscription), so each judges from what it could hear.
/// </summary>
public sealed class HeartbeatWitness
{
    private const long Never = long.MinValue;

    /// <summary><see cref="_storingSince"/> while storing fails.</summary>
    private const long Failing = long.MaxValue;

    private long _listeningSince = Never;
    private Func<bool>? _connected;
    private Func<TimeSpan>? _unhandledFor;

    /// <summary>
    /// Since when storing has worked (ticks, UTC), or <see cref="Failing"/>: one word, so a reader sees either the
    /// failure or the moment storing came back. As a flag beside the moment, the flag was cleared before the moment was
    /// written, and a liveness check in between judged proplets from their heartbeats before the outage (offline).
    /// </summary>
    private long _storingSince = Never;

    /// <summary>The broker connection is up and subscribed from <paramref name="at"/>; <paramref name="connected"/> says
    /// whether it still is, <paramref name="unhandledFor"/> how long the oldest message it received and not yet handled
    /// has waited (zero when none).</summary>
    public void ListeningFrom(DateTimeOffset at, Func<bool> connected, Func<TimeSpan>? unhandledFor = null)
    {
        Volatile.Write(ref _connected, connected);
        Volatile.Write(ref _unhandledFor, unhandledFor);
        Interlocked.Exchange(ref _listeningSince, at.UtcTicks);
    }

    /// <summary>Storing a proplet message failed because PostgreSQL cannot be used now (unreachable, out of resources).</summary>
    public void StoringFailed() => Interlocked.Exchange(ref _storingSince, Failing);

    /// <summary>A proplet message was stored: after failures, storing works again from now (read from
    /// <paramref name="time"/> only then).</summary>
    public void Stored(TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(time);
        if (Interlocked.Read(ref _storingSince) == Failing)
        {
            // Failing until the moment replaces it, in one write; of stores racing here the first sets the moment.
            Interlocked.CompareExchange(ref _storingSince, time.GetUtcNow().UtcTicks, Failing);
        }
    }

    /// <summary>
    /// The latest moment a proplet whose newest recorded heartbeat is <paramref name="recorded"/> may have been alive
    /// as far as this node can tell: no earlier than the moment the node could last begin to hear (plus
    /// <paramref name="reconnectAllowance"/>, for the proplets to reconnect too) and record heartbeats, and
    /// <paramref name="now"/> while it cannot; moved on by the time the oldest unhandled message has waited (at most to
    /// <paramref name="now"/>). Null for a proplet never heard from (silence counts only after a first
    /// heartbeat).
    /// </summary>
    public DateTimeOffset? LastSign(DateTimeOffset? recorded, DateTimeOffset now, TimeSpan reconnectAllowance)
    {
        if (recorded is not { } last)
        {
            return null;
        }

        var listening = Interlocked.Read(ref _listeningSince);
        var storing = Interlocked.Read(ref _storingSince);
        if (listening == Never || Volatile.Read(ref _connected)?.Invoke() == false || storing == Failing)
        {
            return now;
        }

        var since = Math.Max(listening + reconnectAllowance.Ticks, storing);
        var sign = since > last.UtcTicks ? new DateTimeOffset(since, TimeSpan.Zero) : last;
        var unhandled = Volatile.Read(ref _unhandledFor)?.Invoke() ?? TimeSpan.Zero;
        return unhandled <= TimeSpan.Zero ? sign : sign + unhandled < now ? sign + unhandled : now;
    }
}
