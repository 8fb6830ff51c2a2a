namespace Propeller.Cli.Tasks;

/// <summary>
/// The timers of a watch (internal: tests shorten them instead of waiting them out).
/// <paramref name="Quiet"/>: how long a watch waits for a change of its task on the event stream before reading the
/// task again (a manager's stream carries only its own node's commits, and a busy node never pings).
/// <paramref name="FirstRetry"/> and <paramref name="MaxRetry"/>: the backoff of the long polls that finish a watch
/// when the manager cannot be reached (doubling from the first to the most).
/// <paramref name="EarlyAnswerPause"/>: the pause after a long poll answered with a task not ended well before its wait
/// (a manager stopping answers at once), so the polls do not follow each other without pause.
/// </summary>
internal sealed record WaitTiming(TimeSpan Quiet, TimeSpan FirstRetry, TimeSpan MaxRetry, TimeSpan EarlyAnswerPause)
{
    public static WaitTiming Default { get; } = new(TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(1));
}
