using System.Collections.Concurrent;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// Fire-and-forget hook calls (on_task_start, on_task_complete): each runs in the background under the plugin's limits,
/// failures are only logged and counted (by the plugin), and <see cref="DrainAsync"/> waits for those still running.
/// </summary>
internal sealed class NotificationCalls
{
    private readonly ConcurrentDictionary<long, Task> _running = new();
    private long _next;

    public int Count => _running.Count;

    public void Start(LoadedPlugin plugin, string hook, byte[] request)
    {
        var id = Interlocked.Increment(ref _next);
        var run = Task.Run(async () =>
        {
            try
            {
                await plugin.CallAsync(hook, request, returnsValue: false, CancellationToken.None);
            }
            catch (PluginCallException)
            {
                // Logged and counted by the plugin; a notification has no one to report to.
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
    }

    /// <summary>Waits for the calls running now; false when <paramref name="timeout"/> passed first.</summary>
    public async Task<bool> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
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
