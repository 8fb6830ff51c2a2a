namespace Propeller.Plugins.Jobs;

/// <summary>The plugin job bridge: where jobs are kept and how the worker runs them.</summary>
public sealed class PluginJobOptions
{
    public const string DefaultSchema = "propeller_plugins";

    /// <summary>PostgreSQL connection string (Npgsql format).</summary>
    public required string ConnectionString { get; set; }

    /// <summary>Schema of the job tables; created by <see cref="PluginJobStore.MigrateAsync"/> if missing.</summary>
    public string Schema { get; set; } = DefaultSchema;

    /// <summary>Enqueues allowed per plugin per minute unless its manifest says otherwise.</summary>
    public int DefaultRatePerMinute { get; set; } = 60;

    /// <summary>Jobs of one plugin running at once in this process unless its manifest says otherwise.</summary>
    public int DefaultConcurrency { get; set; } = 2;

    /// <summary>
    /// The most jobs of one plugin running at once in this process that its manifest may ask for without the
    /// <c>high_resource_jobs</c> capability (larger values are capped): each running job holds a thread-pool thread and
    /// an instance of <c>job_memory_mb</c>, so an unchecked <c>queue.concurrency</c> would starve the manager.
    /// </summary>
    public int MaxConcurrency { get; set; } = 4;

    /// <summary>Retries when the plugin asks for none.</summary>
    public int DefaultMaxRetry { get; set; } = 3;

    /// <summary>The most retries a plugin may ask for (larger values are capped).</summary>
    public int MaxRetryCap { get; set; } = 10;

    /// <summary>Backoff before retry n is <c>RetryBaseDelay * 2^(n-1)</c>, at most <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(1);

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long a due job may wait unclaimed before a node that cannot run it drops it (its plugin, at the version that
    /// enqueued it, is missing or inactive there; 24 h). Until then it waits for a node that has that plugin, or for a
    /// reload that brings it back: one node's momentary plugin set (a half-copied file, an invalid manifest, a node
    /// without the plugin, a rolling upgrade) is no reason to lose a job.
    /// </summary>
    public TimeSpan OrphanTimeout { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How often the worker looks for due jobs when it found none.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// How long a plugin's enqueue may wait for PostgreSQL in all (connecting, the <c>unique_for</c> lock and every
    /// statement; 5 s), and never longer than what is left of the hook's time limit: the host call blocks the hook that
    /// made it, so a stalled database answers the plugin with an I/O error rather than holding the request.
    /// </summary>
    public TimeSpan EnqueueTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long an ended job (done, failed, dropped) and its history are kept; the worker deletes older ones about every
    /// <see cref="PruneInterval"/>, <see cref="PruneBatch"/> at a time. A pruned job's idempotency key may be used again.
    /// </summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(7);

    public TimeSpan PruneInterval { get; set; } = TimeSpan.FromMinutes(10);

    public int PruneBatch { get; set; } = 10_000;

    /// <summary>Run the job worker in this process (a hosted service).</summary>
    public bool RunWorker { get; set; } = true;
}
