using System.Collections.Concurrent;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// Fire-and-forget hook calls (on_task_start, on_task_complete): each runs in the background under the plugin's limits,
/// failures are only logged and counted (by the plugin), and <see cref="DrainAsync"/> waits for those still running.
/// At most <paramref name="maxPendingPerPlugin"/> of one plugin run at once and none start once draining began: the
/// caller drops (and reports) a notification <see cref="TryStart(string, Func{Task})"/> refuses, so a slow plugin cannot
/// pile calls up without bound and nothing runs on a plugin being disposed. The limit is per plugin: with one budget for
/// all, a plugin whose on_task_complete ran to its time limit filled it, and every other plugin's notifications dropped.
/// </summary>
internal sealed class NotificationCalls(int maxPendingPerPlugin)
{
    private readonly ConcurrentDictionary<long, Task> _running = new();

    // Pending calls by plugin; changed under _gate only (read there too), so a plain dictionary.
    private readonly Dictionary<string, int> _pending = new(StringComparer.Ordinal);

    // Guards the check, the registration and the start of the drain together: a call is counted before it can end (so
    // its removal always follows its registration and nothing stays counted), the limit is never passed by two callers
    // at once, and every call accepted before the drain began is in the drain's snapshot.
    private readonly Lock _gate = new();
    private long _next;
    private bool _draining;

    /// <summary>Calls queued or running, of every plugin.</summary>
    public int Count => _running.Count;

    /// <summary>Calls of <paramref name="plugin"/> queued or running.</summary>
    public int PendingOf(string plugin)
    {
        lock (_gate)
        {
            return _pending.GetValueOrDefault(plugin);
        }
    }

    /// <summary>Calls <paramref name="hook"/> of <paramref name="plugin"/> in the background; false: dropped.</summary>
    public bool TryStart(LoadedPlugin plugin, string hook, byte[] request) => TryStart(plugin.Name, async () =>
    {
        try
        {
            await plugin.NotifyAsync(hook, request, CancellationToken.None);
        }
        catch (PluginCallException)
        {
            // Logged and counted by the plugin; a notification has no one to report to.
        }
    });

    /// <summary>Runs <paramref name="call"/> of <paramref name="plugin"/> in the background (it handles its own
    /// failures); false: dropped, because the drain began or <c>maxPendingPerPlugin</c> calls of that plugin are running.</summary>
    public bool TryStart(string plugin, Func<Task> call)
    {
        long id;
        Task run;
        lock (_gate)
        {
            var pending = _pending.GetValueOrDefault(plugin);
            if (_draining || pending >= maxPendingPerPlugin)
            {
                return false;
            }

            id = ++_next;
            run = Task.Run(call);
            _running[id] = run;
            _pending[plugin] = pending + 1;
        }

        // Attached after the registration: it runs once the call has ended, at once if it already has. A failure the call
        // did not handle (a plugin's native objects disposed at shutdown after a drain that timed out) is observed here: a
        // notification has no one to report to.
        _ = run.ContinueWith(
            ended =>
            {
                _ = ended.Exception;
                lock (_gate)
                {
                    _running.TryRemove(id, out Task? _);
                    if (_pending[plugin] is var left && left > 1)
                    {
                        _pending[plugin] = left - 1;
                    }
                    else
                    {
                        _pending.Remove(plugin);
                    }
                }
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        return true;
    }

    /// <summary>Starts no more calls and waits for those running now; false when <paramref name="timeout"/> passed or
    /// <paramref name="cancellationToken"/> was cancelled first (it never throws for either).</summary>
    public async Task<bool> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        Task[] pending;
        lock (_gate)
        {
            _draining = true;
            pending = [.. _running.Values];
        }

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
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The host's stop token (its shutdown timeout) usually fires before ours: that is the drain giving up too, and
            // the caller logs what is still running. Before, the cancellation left StopAsync and nothing said so.
            return false;
        }
    }
}
