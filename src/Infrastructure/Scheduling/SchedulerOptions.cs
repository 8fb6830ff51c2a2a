using Propeller.Application.Scheduling;

namespace Propeller.Infrastructure.Scheduling;

/// <summary>Settings of the task scheduler.</summary>
public sealed class SchedulerOptions
{
    /// <summary>How often waiting tasks are looked at.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>A proplet is alive while its last heartbeat is younger than this.</summary>
    public TimeSpan LivenessWindow { get; set; } = TimeSpan.FromSeconds(30);

    public SchedulingPolicy Policy { get; set; } = SchedulingPolicy.RoundRobin;

    /// <summary>How often proplet liveness is checked (silent proplets marked offline, their tasks re-dispatched).</summary>
    public TimeSpan LivenessCheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long proplets may take to reconnect once the manager's broker connection is back (the broker restarted, or
    /// the manager): our proplet's longest reconnect backoff. A liveness window starts only after it
    /// (<see cref="Application.Proplets.HeartbeatWitness"/>).
    /// </summary>
    public TimeSpan ReconnectAllowance { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How many times a task whose proplet went offline is re-dispatched before it fails.</summary>
    public int MaxRedispatches { get; set; } = 3;

    /// <summary>A task whose lost run had been dispatched this long before is re-dispatched with its count started
    /// afresh (Domain TaskCommand.RedispatchTask.ResetAfter); zero counts every re-dispatch.</summary>
    public TimeSpan RedispatchResetAfter { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long after a proplet's Last Will (or its "offline" status) its running tasks are re-dispatched: a result it
    /// published just before may be in the hands of another node of a share group, which the will's node cannot wait
    /// for; decided within this delay, the task completes and is not run again. Zero re-dispatches at once.
    /// </summary>
    public TimeSpan OfflineRedispatchDelay { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How many dispatches of one round are appended in parallel.</summary>
    public int DispatchConcurrency { get; set; } = 8;

    /// <summary>Waiting tasks considered per round.</summary>
    public int BatchSize { get; set; } = 200;

    /// <summary>
    /// Wolverine pipeline (ADR 0014): how soon the scheduled sweep looks again while tasks wait for a proplet (events
    /// place them sooner: a proplet discovered or back online).
    /// </summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Wolverine pipeline: how soon the scheduled sweep looks again when nothing waits (the safety net).</summary>
    public TimeSpan IdleSweepInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary><c>m/{tenant}/c/{channel}</c>: where start messages go.</summary>
    public string BaseTopic { get; set; } = "m/default/c/default";
}
