namespace Propeller.Broker;

/// <summary>
/// Runs work in order per key: a key's work starts once the work before it with the same key has ended (however it
/// ended), work of different keys runs side by side. A key is forgotten once its last work has ended, so the keys seen
/// over a process's life (task ids) do not pile up.
/// </summary>
public sealed class KeyedOrder
{
    private readonly Dictionary<string, Task> _tails = new(StringComparer.Ordinal);

    /// <summary>Keys with work not yet ended.</summary>
    public int Count
    {
        get
        {
            lock (_tails)
            {
                return _tails.Count;
            }
        }
    }

    /// <summary>Starts <paramref name="work"/> after the last work given for <paramref name="key"/> has ended (at once
    /// when there is none); returns it.</summary>
    public Task RunAsync(string key, Func<Task> work)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(work);
        lock (_tails)
        {
            var next = _tails.TryGetValue(key, out var previous) ? AfterAsync(previous, work) : work();
            if (next.IsCompleted)
            {
                _tails.Remove(key);
                return next;
            }

            _tails[key] = next;
            _ = next.ContinueWith(
                static (ended, state) =>
                {
                    var (order, key) = ((KeyedOrder, string))state!;
                    lock (order._tails)
                    {
                        // The last work of its key forgets the key (a later one replaced it otherwise).
                        if (order._tails.TryGetValue(key, out var last) && last == ended)
                        {
                            order._tails.Remove(key);
                        }
                    }
                },
                (this, key),
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            return next;
        }
    }

    private static async Task AfterAsync(Task previous, Func<Task> work)
    {
        await previous.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await work();
    }
}
