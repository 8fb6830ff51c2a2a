using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Hosting;

/// <summary>
/// The current plugin set, swapped whole by <see cref="Reload(CancellationToken)"/>. A chain reads <see cref="Current"/> once and uses that
/// snapshot to the end, so a reload never mixes sets within a call, and calls in flight on the old set finish on it
/// (its instances are disposed as they come back). Counters are kept by plugin name across reloads.
/// </summary>
public sealed class PluginCatalog : IDisposable
{
    private readonly ConcurrentDictionary<string, PluginCounters> _counters = new(StringComparer.Ordinal);

    // One reload at a time. POST /plugins/reload does not wait for it (TryReload): a reload runs every start function (up
    // to PluginHostOptions.LoadTimeout each), and each request waiting on a lock held a thread-pool thread that its
    // RequestAborted could not free.
    private readonly SemaphoreSlim _reloading = new(1, 1);
    private PluginSet _current = PluginSet.Empty;

    public PluginCatalog(PluginHostOptions options, ILogger<PluginCatalog> logger, PluginMetrics metrics, IPluginJobSink? jobs = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        Runtime = new PluginRuntime(options, logger, metrics, jobs);
    }

    public PluginHostOptions Options { get; }

    public PluginRuntime Runtime { get; }

    public PluginSet Current => Volatile.Read(ref _current);

    public DateTimeOffset? LoadedAt { get; private set; }

    /// <summary>Counters of a plugin by name (also for plugins no longer loaded).</summary>
    public PluginCounters Counters(string name) => _counters.GetOrAdd(name, _ => new PluginCounters());

    /// <summary>
    /// Loads the directory again and swaps the set atomically. Throws <see cref="PluginDirectoryException"/> (the old set
    /// stays) when the directory is not usable, and <see cref="OperationCanceledException"/> (the old set stays) when
    /// <paramref name="cancellationToken"/> stopped a start function. Files that fail are skipped and listed in
    /// <see cref="PluginSet.Skipped"/>, except a file of a plugin loaded before: that plugin keeps its loaded version
    /// (listed in <see cref="PluginSet.Kept"/>, logged as a warning). A reload while <c>auth.wasm</c> was half copied, or
    /// with a bad <c>auth.json</c>, retired the working version and left the chain without it: an empty chain allows
    /// everything. A plugin whose <c>.wasm</c> is gone was removed on purpose and is dropped.
    /// </summary>
    public PluginSet Reload(CancellationToken cancellationToken = default) => Reload(wait: true, cancellationToken)!;

    /// <summary>
    /// As <see cref="Reload(CancellationToken)"/>, but returns null at once when another reload is running (the caller
    /// refuses the request; the set that reload makes reads the same directory).
    /// </summary>
    public PluginSet? TryReload(CancellationToken cancellationToken) => Reload(wait: false, cancellationToken);

    /// <summary>The reload, after waiting for one running (<paramref name="wait"/>), else null when one is running.</summary>
    private PluginSet? Reload(bool wait, CancellationToken cancellationToken)
    {
        if (!_reloading.Wait(wait ? Timeout.Infinite : 0, cancellationToken))
        {
            return null;
        }

        try
        {
            return ReloadHeld(cancellationToken);
        }
        finally
        {
            _reloading.Release();
        }
    }

    private PluginSet ReloadHeld(CancellationToken cancellationToken)
    {
        PluginSet loaded;
        try
        {
            loaded = PluginLoader.Load(Runtime, Options.Directory, _counters, cancellationToken: cancellationToken);
        }
        catch (PluginDirectoryException e)
        {
            // POST /plugins/reload answers it too; the operator's log says it as well.
            PluginLog.ReloadFailed(Runtime.Logger, e.Message);
            throw;
        }
        catch (OperationCanceledException)
        {
            PluginLog.ReloadFailed(Runtime.Logger, "the reload was cancelled");
            throw;
        }

        var previous = Current;
        var next = KeepPreviousVersions(previous, loaded);
        Interlocked.Exchange(ref _current, next);
        LoadedAt = DateTimeOffset.UtcNow;
        foreach (var plugin in previous.All.Where(p => !next.All.Contains(p)))
        {
            plugin.Retire();
        }

        PluginLog.Reloaded(Runtime.Logger, next.All.Count, next.Skipped.Count, next.Kept.Count);
        return next;
    }

    /// <summary>
    /// <paramref name="loaded"/> with each skipped file of a plugin in <paramref name="previous"/> replaced by the previous
    /// version, when the file is still there (a half-copied module, a bad manifest, a start function that traps).
    /// </summary>
    private PluginSet KeepPreviousVersions(PluginSet previous, PluginSet loaded)
    {
        var plugins = loaded.All.ToList();
        var skipped = new List<PluginLoadError>();
        var kept = new List<PluginLoadError>();
        foreach (var error in loaded.Skipped)
        {
            if (previous.Find(error.Plugin) is { } old && plugins.All(p => p.Name != error.Plugin) && StillThere(error.File))
            {
                plugins.Add(old);
                kept.Add(error);
                Runtime.Metrics.ReloadKept(old.Name);
                PluginLog.KeptPrevious(Runtime.Logger, old.Name, error.File, error.Error, old.Hash[..12]);
            }
            else
            {
                skipped.Add(error);
            }
        }

        return kept.Count == 0
            ? loaded
            : new PluginSet([.. plugins.OrderBy(p => Path.GetFileName(p.File), StringComparer.Ordinal)], skipped, kept);
    }

    /// <summary>Whether the plugin's file (or a link of that name) is in the directory: one that is gone was removed.</summary>
    private static bool StillThere(string file)
    {
        try
        {
            var info = new FileInfo(file);
            return info.Exists || info.LinkTarget is not null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.SecurityException)
        {
            return true;
        }
    }

    public void Dispose()
    {
        foreach (var plugin in Current.All)
        {
            plugin.Retire();
        }

        // _reloading is not disposed: a reload may still be running (a request at shutdown), and its Release would throw
        // ObjectDisposedException over its outcome; a SemaphoreSlim whose wait handle was never asked for holds nothing.
        Runtime.Dispose();
    }
}
