namespace Propeller.Plugins.Runtime;

/// <summary>Per-plugin counters shown by <c>GET /plugins</c>; kept by name across reloads.</summary>
public sealed class PluginCounters
{
    private long _calls;
    private long _denies;
    private long _failures;
    private long _jobsEnqueued;
    private long _jobsRejected;
    private long _jobsSucceeded;
    private long _jobsFailed;

    public long Calls => Volatile.Read(ref _calls);

    public long Denies => Volatile.Read(ref _denies);

    public long Failures => Volatile.Read(ref _failures);

    public long JobsEnqueued => Volatile.Read(ref _jobsEnqueued);

    public long JobsRejected => Volatile.Read(ref _jobsRejected);

    public long JobsSucceeded => Volatile.Read(ref _jobsSucceeded);

    public long JobsFailed => Volatile.Read(ref _jobsFailed);

    internal void Call() => Interlocked.Increment(ref _calls);

    internal void Deny() => Interlocked.Increment(ref _denies);

    internal void Failure() => Interlocked.Increment(ref _failures);

    internal void JobEnqueued() => Interlocked.Increment(ref _jobsEnqueued);

    internal void JobRejected() => Interlocked.Increment(ref _jobsRejected);

    internal void JobSucceeded() => Interlocked.Increment(ref _jobsSucceeded);

    internal void JobFailed() => Interlocked.Increment(ref _jobsFailed);
}
