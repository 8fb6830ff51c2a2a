using System.Collections.Concurrent;

namespace Propeller.Application.Aggregates;

/// <summary>
/// In-process notifications of appended streams, so a reader can wait for a change (long polling) instead of polling
/// the store. Only appends made through this node's <see cref="CommandHandler"/> are seen; a waiter also re-reads on
/// its own interval, so changes made by other nodes are picked up, later.
/// </summary>
public sealed class StreamChanges
{
    /// <summary>Beyond this many watched streams every waiter is woken and forgotten: waiters re-read and wait
    /// again, so this only bounds the memory kept for streams that are waited on but never change.</summary>
    public const int MaxWatchedStreams = 10_000;

    private readonly ConcurrentDictionary<string, TaskCompletionSource<object?>> _waiters = new(StringComparer.Ordinal);

    /// <summary>Wakes everyone waiting on <paramref name="streamId"/>, handing them the state after the append (when known).</summary>
    public void Notify(string streamId, object? state = null)
    {
        if (_waiters.TryRemove(streamId, out var waiter))
        {
            waiter.TrySetResult(state);
        }
    }

    /// <summary>
    /// A task that completes at the next append to <paramref name="streamId"/>. Take it before reading the state, then
    /// await it (with a timeout) only if the state read is not yet the one wanted: no append can fall in between.
    /// </summary>
    public Task<object?> NextAppendAsync(string streamId)
    {
        if (_waiters.Count >= MaxWatchedStreams)
        {
            foreach (var key in _waiters.Keys)
            {
                Notify(key);
            }
        }

        return _waiters.GetOrAdd(streamId, static _ => new TaskCompletionSource<object?>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }

    /// <summary>How many streams have waiters (for tests and metrics).</summary>
    public int WatchedStreams => _waiters.Count;
}
