using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Hosting;

/// <summary>
/// The current plugin set, swapped whole by <see cref="Reload"/>. A chain reads <see cref="Current"/> once and uses that
/// snapshot to the end, so a reload never mixes sets within a call, and calls in flight on the old set finish on it
/// (its instances are disposed as they come back). Counters are kept by plugin name across reloads.
/// </summary>
public sealed class PluginCatalog : IDisposable
{
    private readonly ConcurrentDictionary<string, PluginCounters> _counters = new(StringComparer.Ordinal);
    private readonly Lock _reloadLock = new();
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
    /// stays) when the directory is not usable; files that fail are skipped and listed in <see cref="PluginSet.Skipped"/>.
    /// </summary>
    public PluginSet Reload()
    {
        lock (_reloadLock)
        {
            PluginSet next;
            try
            {
                next = PluginLoader.Load(Runtime, Options.Directory, _counters);
            }
            catch (PluginDirectoryException e)
            {
                // POST /plugins/reload answers it too; the operator's log says it as well.
                PluginLog.ReloadFailed(Runtime.Logger, e.Message);
                throw;
            }

            var previous = Interlocked.Exchange(ref _current, next);
            LoadedAt = DateTimeOffset.UtcNow;
            foreach (var plugin in previous.All)
            {
                plugin.Retire();
            }

            PluginLog.Reloaded(Runtime.Logger, next.All.Count, next.Skipped.Count);
            return next;
        }
    }

    public void Dispose()
    {
        foreach (var plugin in Current.All)
        {
            plugin.Retire();
        }

        Runtime.Dispose();
    }
}
