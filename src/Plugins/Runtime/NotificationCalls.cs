using System.Collections.Concurrent;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// Fire-and-forget hook calls (on_task_start, on_task_complete): each runs in the background under the plugin's limits,
/// failures are only logged and counted (by the plugin), and <see cref="DrainAsync"/> waits for those still running.
/// At most <paramref name="maxPending"/> run at once and none start once draining began: the caller drops (and reports)
/// a notification <see cref="TryStart(Func{Task})"/> refuses, so a slow plugin cannot pile calls up without bound and
/// nothing runs on a plugin being disposed.
/// </summary>
internal sealed class NotificationCalls(int maxPending)
{
    private readonly ConcurrentDictionary<long, Task> _running = new();
    private long _next;
    private volatile bool _draining;

    public int Count => _running.Count;

    /// <summary>Calls <paramref name="hook"/> of <paramref name="plugin"/> in the background; false: dropped.</summary>
    public bool TryStart(LoadedPlugin plugin, string hook, byte[] request) => TryStart(async () =>
    {
        try
        {
            await plugin.CallAsync(hook, request, returnsValue: false, CancellationToken.None);
        }
        catch (PluginCallException)
        {
            // Logged and counted by the plugin; a notification has no one to report to.
        }
    });

    /// <summary>Runs <paramref name="call"/> in the background (it handles its own failures); false: dropped, because
    /// the drain began or <c>maxPending</c> calls are running.</summary>
    public bool TryStart(Func<Task> call)
    {
        if (_draining || _running.Count >= maxPending)
        {
            return false;
        }

        var id = Interlocked.Increment(ref _next);
        var run = Task.Run(async () =>
        {
            try
            {
                await call();
            }
            finally
            {
                _running.TryRemove(id, out _);
            }
        });
        _running.TryAdd(id, run);
        if (run.IsCompleted)
        {
            _running.TryRemove(id, out _);
        }

        return true;
    }

    /// <summary>Starts no more calls and waits for those running now; false when <paramref name="timeout"/> passed first.</summary>
    public async Task<bool> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        _draining = true;
        var pending = _running.Values.ToArray();
        if (pending.Length == 0)
        {
            return true;
        }

        try
        {
            await Task.WhenAll(pending).WaitAsync(timeout, cancellationToken);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }
}
