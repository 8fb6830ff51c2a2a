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
        ArgumentNullException.ThrowIfNull(work);
        return RunAsync(key, previous => previous.IsCompleted ? work() : AfterAsync(previous, work));
    }

    /// <summary>
    /// Calls <paramref name="work"/> at once with a task that ends once the last work given for <paramref name="key"/>
    /// has ended (only its end matters: it may carry that work's failure); the work waits for it as it sees fit (bounded
    /// by a deadline or a token, say) and may end before it. The next work of the key still waits for both, this work
    /// and the one before it, so work that gave up early does not let a later one overtake an earlier one still running.
    /// </summary>
    public Task RunAsync(string key, Func<Task, Task> work)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(work);
        lock (_tails)
        {
            var previous = _tails.TryGetValue(key, out var last) ? last : Task.CompletedTask;
            var next = work(previous);
            if (next.IsCompleted && previous.IsCompleted)
            {
                _tails.Remove(key);
                return next;
            }

            var tail = previous.IsCompleted ? next : BothEndedAsync(previous, next);
            _tails[key] = tail;
            _ = tail.ContinueWith(
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

    /// <summary>
    /// Runs <paramref name="work"/> for several keys at once (a batch of messages): it starts once the last work given
    /// for each of <paramref name="keys"/> has ended, and the next work of any of them waits for it. Work of other keys
    /// runs side by side.
    /// </summary>
    public async Task RunAsync(IReadOnlyCollection<string> keys, Func<Task> work)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(work);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        List<Task>? before = null;
        lock (_tails)
        {
            foreach (var key in keys)
            {
                if (_tails.TryGetValue(key, out var last) && !last.IsCompleted && last != done.Task)
                {
                    (before ??= []).Add(last);
                }

                _tails[key] = done.Task;
            }
        }

        try
        {
            if (before is not null)
            {
                await Task.WhenAll(before).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            await work();
        }
        finally
        {
            lock (_tails)
            {
                foreach (var key in keys)
                {
                    if (_tails.TryGetValue(key, out var last) && last == done.Task)
                    {
                        _tails.Remove(key);
                    }
                }
            }

            done.SetResult();
        }
    }

    private static async Task AfterAsync(Task previous, Func<Task> work)
    {
        await previous.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await work();
    }

    /// <summary>Ends once both have ended, however they ended: the tail a key's next work waits for.</summary>
    private static async Task BothEndedAsync(Task previous, Task next)
    {
        await previous.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await next.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}
