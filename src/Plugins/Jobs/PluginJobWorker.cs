using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Polly;
using Polly.Retry;
using Polly.Timeout;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Jobs;

/// <summary>
/// Runs plugin jobs (seed 004): for each active plugin with a free slot (manifest <c>queue.concurrency</c>, default 2
/// in flight per process, capped by <see cref="Concurrency"/>) it claims due jobs of the plugin's version (hash),
/// re-resolves the plugin by name and hands the job back untouched when a reload removed, deactivated or changed it
/// meanwhile (another node, or the next reload, runs it), drops it when the plugin has no <c>handle_job</c>; otherwise
/// it calls <c>handle_job</c> in a fresh instance under the job limits. A job no node runs is dropped only after
/// <see cref="PluginJobOptions.OrphanTimeout"/> (<see cref="PluginJobStore.DropOrphansAsync"/>). A failure (any exception in the run, too) is retried with exponential backoff until
/// <c>max_retry</c>, then the job is failed. A run records its end only while its claim is still the job's.
/// Every step is written to the job's history. Once <c>handle_job</c> has returned, its outcome is recorded whatever
/// happens to the stop token, and a brief database error is retried (<see cref="_bookkeeping"/>): otherwise a job that
/// ran would stay running until its lease ran out and then run again, or fail as an attempt that never finished.
/// </summary>
public sealed partial class PluginJobWorker : BackgroundService
{
    /// <summary>The most prune batches one round runs (1,000,000 jobs at the default batch).</summary>
    internal const int MaxPruneBatches = 100;

    private readonly PluginCatalog _catalog;
    private readonly PluginJobStore _store;
    private readonly PluginJobOptions _options;
    private readonly ILogger<PluginJobWorker> _logger;
    private readonly ConcurrentDictionary<string, int> _inFlight = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Guid, Task> _running = new();
    private readonly SemaphoreSlim _wake = new(0);
    private long _lastPrune; // 0: the first poll prunes

    /// <summary>
    /// A bookkeeping write: each try bounded by 10 s, tried again after a database error or a try that ran out of time
    /// (4 more times, pauses doubling from 100 ms), then its last error goes up. Repeating is safe: every write is
    /// guarded by the claim (job and attempt number).
    /// </summary>
    private readonly ResiliencePipeline _bookkeeping;

    public PluginJobWorker(PluginCatalog catalog, PluginJobStore store, PluginJobQueue queue, PluginJobOptions options, ILogger<PluginJobWorker> logger)
    {
        ArgumentNullException.ThrowIfNull(queue);
        _catalog = catalog;
        _store = store;
        _options = options;
        _logger = logger;
        queue.Enqueued += (_, _) => Wake();
        _bookkeeping = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<NpgsqlException>().Handle<TimeoutRejectedException>(),
                MaxRetryAttempts = 4,
                Delay = TimeSpan.FromMilliseconds(100),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = false,
                OnRetry = args =>
                {
                    LogBookkeepingRetry(_logger, args.AttemptNumber + 1, args.RetryDelay, args.Outcome.Exception);
                    return default;
                },
            })
            .AddTimeout(TimeSpan.FromSeconds(10))
            .Build();
    }

    /// <summary>Jobs running right now, by plugin name.</summary>
    public int InFlight(string plugin) => _inFlight.GetValueOrDefault(plugin);

    /// <summary>The most jobs of one plugin seen running at once since start (for tests and diagnostics).</summary>
    public int PeakInFlight { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var started = 0;
            try
            {
                started = await PollOnceAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
#pragma warning disable CA1031 // The worker must outlive a database hiccup; it logs and polls again.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogPollFailed(_logger, e);
            }

            if (started == 0)
            {
                try
                {
                    await _wake.WaitAsync(_options.PollInterval, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        // Jobs still running were interrupted by the token; they hand themselves back. Wait for that.
        await Task.WhenAll(_running.Values.ToArray());
    }

    /// <summary>
    /// Deletes ended jobs past the retention, <see cref="PluginJobOptions.PruneBatch"/> per statement (short
    /// transactions, bounded locks), until a batch comes back short: one batch per interval removed at most 10,000 jobs
    /// every 10 minutes, fewer than a busy plugin ends, so the backlog grew for ever. At most <see cref="MaxPruneBatches"/>
    /// batches a round, so one round never holds up claiming for long; what is left waits for the next interval.
    /// </summary>
    private async Task<long> PruneAsync(CancellationToken cancellationToken)
    {
        long total = 0;
        for (var batch = 0; batch < MaxPruneBatches; batch++)
        {
            var pruned = await _store.PruneAsync(_options.Retention, _options.PruneBatch, cancellationToken);
            total += pruned;
            if (pruned < _options.PruneBatch)
            {
                break;
            }
        }

        return total;
    }

    /// <summary>Completes when the jobs started so far have finished (tests, shutdown).</summary>
    internal Task WhenIdleAsync() => Task.WhenAll(_running.Values.ToArray());

    /// <summary>One round: drop orphans, claim and start due jobs. Returns how many were started.</summary>
    internal async Task<int> PollOnceAsync(CancellationToken cancellationToken)
    {
        var set = _catalog.Current;
        var orphans = await _store.DropOrphansAsync([.. set.Active.Select(p => (p.Name, p.Hash))], _options.OrphanTimeout, cancellationToken);
        if (orphans > 0)
        {
            LogOrphansDropped(_logger, orphans, _options.OrphanTimeout);
        }

        if (Stopwatch.GetElapsedTime(_lastPrune) >= _options.PruneInterval)
        {
            _lastPrune = Stopwatch.GetTimestamp();
            var pruned = await PruneAsync(cancellationToken);
            if (pruned > 0)
            {
                LogPruned(_logger, pruned, _options.Retention);
            }
        }

        var started = 0;
        foreach (var plugin in set.Active)
        {
            var limit = Concurrency(plugin);
            var free = limit - _inFlight.GetValueOrDefault(plugin.Name);
            if (free <= 0)
            {
                continue;
            }

            foreach (var job in await _store.ClaimAsync(plugin.Name, plugin.Hash, free, Lease(plugin), cancellationToken))
            {
                var now = _inFlight.AddOrUpdate(plugin.Name, 1, (_, n) => n + 1);
                PeakInFlight = Math.Max(PeakInFlight, now);
                started++;
                var run = Task.Run(() => RunAsync(job, cancellationToken), CancellationToken.None);
                _running[job.Id] = run;
                _ = run.ContinueWith(
                    _ =>
                    {
                        _running.TryRemove(job.Id, out Task? _);
                        _inFlight.AddOrUpdate(job.Plugin, 0, (_, n) => n - 1);
                        Wake();
                    },
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
            }
        }

        return started;
    }

    /// <summary>How long a claim of a job of <paramref name="plugin"/> is the worker's, from its claim and again from its
    /// run's start: the run's time limit (its instantiation and <c>handle_job</c> share it) and a margin for recording
    /// its outcome. Past it the job is someone else's to claim.</summary>
    private static TimeSpan Lease(LoadedPlugin plugin) => plugin.Limits.JobTimeout + TimeSpan.FromSeconds(30);

    /// <summary>
    /// How many jobs of <paramref name="plugin"/> may run at once here: its manifest's <c>queue.concurrency</c> (else the
    /// default), capped at <see cref="PluginJobOptions.MaxConcurrency"/> unless it holds <c>high_resource_jobs</c>, as
    /// its other job limits can only be raised with that capability.
    /// </summary>
    internal int Concurrency(LoadedPlugin plugin)
    {
        var limit = plugin.Manifest.Concurrency ?? _options.DefaultConcurrency;
        return plugin.Manifest.Has(PluginManifest.HighResourceJobsCapability) ? limit : Math.Min(limit, Math.Max(_options.MaxConcurrency, 1));
    }

    private async Task RunAsync(PluginJob job, CancellationToken cancellationToken)
    {
        // A reload between the claim and here may have taken the plugin away or changed it: that is this node's set of the
        // moment, so the job goes back untouched for a node (or a later reload) that has the plugin at its version.
        var plugin = _catalog.Current.Find(job.Plugin);
        string? handBack = plugin switch
        {
            null => "plugin gone here",
            { Active: false } => "plugin inactive here",
            _ when plugin.Hash != job.PluginHash => $"plugin here at another version ({plugin.Hash[..12]}, job for {job.PluginHash[..Math.Min(12, job.PluginHash.Length)]})",
            _ => null,
        };

        // The module the job was enqueued by (its hash) has no handle_job: no node can ever run it.
        var drop = handBack is null && !plugin!.Has(PluginHooks.HandleJob) ? "plugin has no handle_job export" : null;
        try
        {
            if (handBack is not null)
            {
                await _bookkeeping.ExecuteAsync(async ct => await _store.ReleaseAsync(job.Id, job.Attempts, ct), CancellationToken.None);
                LogHandedBack(_logger, job.Id, job.Type, handBack);
                return;
            }

            if (drop is not null)
            {
                await FinishAsync(job, "dropped", "dropped", drop, null);
                LogDropped(_logger, job.Id, job.Type, drop);
                return;
            }

            // Before the call the stop token still counts: stopping here hands the job back untouched. The claim is checked
            // and leased again for the run: the claim's lease may have run out while this record was retried.
            if (!await _bookkeeping.ExecuteAsync(async ct => await _store.StartAsync(job.Id, job.Attempts, Lease(plugin!), ct), cancellationToken))
            {
                LogClaimLostBeforeTheRun(_logger, job.Id, job.Type, job.Attempts);
                return;
            }

            string? error;
            try
            {
                error = PluginResponses.JobError(plugin!.CallJob(Request(job), cancellationToken));
            }
            // Every error is cut like a job's own (it goes into the job's row, its history and the logs), also the failures
            // the host words, whose message can repeat what the plugin answered.
            catch (PluginCallException e)
            {
                error = PluginResponses.Truncate(e.Message);
            }
            catch (FormatException e)
            {
                plugin!.RecordMalformed(PluginHookNames.HandleJob, e.Message);
                error = PluginResponses.Truncate(e.Message);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
#pragma warning disable CA1031 // Whatever went wrong in the run, it is a failed attempt: retried or dead by max_retry, never left running.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogRunCrashed(_logger, job.Id, job.Type, job.Attempts, e);
                error = PluginResponses.Truncate($"unexpected failure: {e.GetType().Name}: {e.Message}");
            }

            if (error is null)
            {
                plugin!.Counters.JobSucceeded();
                _catalog.Runtime.Metrics.JobRun(job.Plugin, "succeeded");
                await FinishAsync(job, "done", "succeeded", null, null);
                return;
            }

            plugin!.Counters.JobFailed();
            if (job.Attempts <= job.MaxRetry)
            {
                var delay = Backoff(job.Attempts);
                _catalog.Runtime.Metrics.JobRun(job.Plugin, "retry");
                await FinishAsync(job, "pending", "failed", error, delay);
                LogRetry(_logger, job.Id, job.Type, job.Attempts, error, delay);
            }
            else
            {
                _catalog.Runtime.Metrics.JobRun(job.Plugin, "failed");
                await FinishAsync(job, "failed", "dead", error, null);
                LogDead(_logger, job.Id, job.Type, job.Attempts, error);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await _store.ReleaseAsync(job.Id, job.Attempts, CancellationToken.None);
        }
#pragma warning disable CA1031 // A job's bookkeeping failure must not take the worker down; the lease brings the job back.
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogRunFailed(_logger, job.Id, e);
        }
    }

    /// <summary>
    /// Finishes this worker's claim; a claim lost meanwhile (lease expired, claimed again) is left alone and logged. Not
    /// cancelled by the stop token: the outcome is known, and releasing the job instead would run it again.
    /// </summary>
    private async Task FinishAsync(PluginJob job, string state, string @event, string? detail, TimeSpan? retryIn)
    {
        if (!await _bookkeeping.ExecuteAsync(async ct => await _store.FinishAsync(job.Id, job.Attempts, state, @event, detail, retryIn, ct), CancellationToken.None))
        {
            LogClaimLost(_logger, job.Id, job.Type, job.Attempts, @event);
        }
    }

    internal TimeSpan Backoff(int attempt)
    {
        var factor = Math.Pow(2, Math.Clamp(attempt - 1, 0, 30));
        var delay = TimeSpan.FromTicks((long)Math.Min(_options.RetryBaseDelay.Ticks * factor, _options.MaxRetryDelay.Ticks));
        return delay;
    }

    private static byte[] Request(PluginJob job) => PluginJson.Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("id", job.Id);
        w.WriteString("type", job.UserType);
        w.WritePropertyName("payload");
        if (job.Payload is null)
        {
            w.WriteNullValue();
        }
        else
        {
            using var payload = JsonDocument.Parse(job.Payload);
            payload.RootElement.WriteTo(w);
        }

        w.WriteNumber("attempt", job.Attempts);
        w.WriteNumber("max_retry", job.MaxRetry);
        if (job.EnqueuedBy is not null)
        {
            w.WriteString("enqueued_by", job.EnqueuedBy);
        }

        w.WriteEndObject();
    });

    private void Wake()
    {
        if (_wake.CurrentCount == 0)
        {
            _wake.Release();
        }
    }

    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 5101, Level = LogLevel.Error, Message = "Plugin job poll failed")]
    private static partial void LogPollFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5102, Level = LogLevel.Warning, Message = "Plugin job {JobId} ({Type}) dropped without retry: {Reason}")]
    private static partial void LogDropped(ILogger logger, Guid jobId, string type, string reason);

    [LoggerMessage(EventId = 5103, Level = LogLevel.Warning, Message = "Plugin job {JobId} ({Type}) attempt {Attempt} failed: {Error}; retry in {Delay}")]
    private static partial void LogRetry(ILogger logger, Guid jobId, string type, int attempt, string error, TimeSpan delay);

    [LoggerMessage(EventId = 5104, Level = LogLevel.Error, Message = "Plugin job {JobId} ({Type}) failed for good after {Attempt} attempts: {Error}")]
    private static partial void LogDead(ILogger logger, Guid jobId, string type, int attempt, string error);

    [LoggerMessage(EventId = 5105, Level = LogLevel.Error, Message = "Plugin job {JobId}: bookkeeping failed")]
    private static partial void LogRunFailed(ILogger logger, Guid jobId, Exception exception);

    [LoggerMessage(EventId = 5106, Level = LogLevel.Error, Message = "Plugin job {JobId} ({Type}) attempt {Attempt} failed unexpectedly")]
    private static partial void LogRunCrashed(ILogger logger, Guid jobId, string type, int attempt, Exception exception);

    [LoggerMessage(EventId = 5108, Level = LogLevel.Warning, Message = "Plugin job bookkeeping try {Try} failed; trying again in {Pause}")]
    private static partial void LogBookkeepingRetry(ILogger logger, int @try, TimeSpan pause, Exception? exception);

    [LoggerMessage(EventId = 5107, Level = LogLevel.Warning, Message = "Plugin job {JobId} ({Type}) attempt {Attempt}: the claim was lost (lease expired, claimed again), its result ({Event}) is not recorded")]
    private static partial void LogClaimLost(ILogger logger, Guid jobId, string type, int attempt, string @event);

    [LoggerMessage(EventId = 5111, Level = LogLevel.Warning, Message = "Plugin job {JobId} ({Type}) attempt {Attempt}: the claim was lost before the run started (its lease ran out while the start was recorded); not run here")]
    private static partial void LogClaimLostBeforeTheRun(ILogger logger, Guid jobId, string type, int attempt);

    [LoggerMessage(EventId = 5112, Level = LogLevel.Information, Message = "Plugin job {JobId} ({Type}) handed back untouched for another node or a later reload: {Reason}")]
    private static partial void LogHandedBack(ILogger logger, Guid jobId, string type, string reason);

    [LoggerMessage(EventId = 5113, Level = LogLevel.Warning, Message = "Dropped {Count} plugin jobs that no node ran for {Timeout}: their plugin at their version is missing or inactive here")]
    private static partial void LogOrphansDropped(ILogger logger, int count, TimeSpan timeout);

    [LoggerMessage(EventId = 5110, Level = LogLevel.Information, Message = "Deleted {Count} plugin jobs that ended more than {Retention} ago, with their history")]
    private static partial void LogPruned(ILogger logger, long count, TimeSpan retention);
}
