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

    // Guards the check, the registration and the start of the drain together: a call is counted before it can end (so
    // its removal always follows its registration and nothing stays counted), the limit is never passed by two callers
    // at once, and every call accepted before the drain began is in the drain's snapshot.
    private readonly Lock _gate = new();
    private long _next;
    private bool _draining;

    public int Count => _running.Count;

    /// <summary>Calls <paramref name="hook"/> of <paramref name="plugin"/> in the background; false: dropped.</summary>
    public bool TryStart(LoadedPlugin plugin, string hook, byte[] request) => TryStart(async () =>
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

    /// <summary>Runs <paramref name="call"/> in the background (it handles its own failures); false: dropped, because
    /// the drain began or <c>maxPending</c> calls are running.</summary>
    public bool TryStart(Func<Task> call)
    {
        long id;
        Task run;
        lock (_gate)
        {
            if (_draining || _running.Count >= maxPending)
            {
                return false;
            }

            id = ++_next;
            run = Task.Run(call);
            _running[id] = run;
        }

        // Attached after the registration: it runs once the call has ended, at once if it already has. A failure the call
        // did not handle (a plugin's native objects disposed at shutdown after a drain that timed out) is observed here: a
        // notification has no one to report to.
        _ = run.ContinueWith(
            ended =>
            {
                _ = ended.Exception;
                _running.TryRemove(id, out Task? _);
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        return true;
    }

    /// <summary>Starts no more calls and waits for those running now; false when <paramref name="timeout"/> passed first.</summary>
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
    }
}
