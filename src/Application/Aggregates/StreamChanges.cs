using System.Collections.Concurrent;
using System.Collections.Immutable;
using Propeller.Application.Changes;

namespace Propeller.Application.Aggregates;

/// <summary>
/// In-process notifications of appended streams, so a reader can wait for a change (long polling) instead of polling
/// the store. Only commits made by this node's command handlers are seen; a waiter also re-reads on
/// its own interval, so changes made by other nodes are picked up, later. It is also this node's
/// <see cref="IChangeFeed"/>: subscribers see every stream's committed appends.
/// </summary>
public sealed class StreamChanges : IChangeFeed
{
    /// <summary>Changes a subscriber may lag behind before it is told to reload.</summary>
    private const int SubscriptionCapacity = 4096;

    /// <summary>
    /// Bytes of changes a subscriber may hold before it is told to reload: the count alone let a reader just fast enough
    /// not to be cut hold 4096 whole task states (up to 1 MiB of metadata each) that the caches had let go.
    /// </summary>
    private const long SubscriptionBytes = ChangeSubscription.DefaultByteBudget;

    private readonly ConcurrentDictionary<string, ImmutableArray<Watch>> _watches = new(StringComparer.Ordinal);

    private ImmutableArray<ChangeSubscription> _subscriptions = [];

    /// <summary>
    /// Called after every append: hands the new state (when known) to the stream's watches and the subscribers. The
    /// notice's size is estimated once, from its state's string lengths, and only when someone subscribes.
    /// </summary>
    public void Notify(string streamId, long version, object? state)
    {
        var subscriptions = _subscriptions;
        if (!subscriptions.IsEmpty)
        {
            var notice = new ChangeNotice(streamId, version, state);
            foreach (var subscription in subscriptions)
            {
                subscription.Post(notice);
            }
        }

        if (_watches.TryGetValue(streamId, out var watches))
        {
            foreach (var watch in watches)
            {
                watch.Post(version, state);
            }
        }
    }

    /// <summary>
    /// Starts watching <paramref name="streamId"/>: every append from now on is seen, so read the state after this
    /// call and then wait on the watch. Dispose it when done.
    /// </summary>
    public Watch Start(string streamId)
    {
        var watch = new Watch(this, streamId);
        _watches.AddOrUpdate(streamId, static (_, w) => [w], static (_, list, w) => list.Add(w), watch);
        return watch;
    }

    /// <inheritdoc />
    public ChangeSubscription Subscribe()
    {
        var subscription = new ChangeSubscription(SubscriptionCapacity, SubscriptionBytes, s => ImmutableInterlocked.Update(ref _subscriptions, static (list, item) => list.Remove(item), s));
        ImmutableInterlocked.Update(ref _subscriptions, static (list, item) => list.Add(item), subscription);
        return subscription;
    }

    /// <summary>How many subscribers follow every stream (for tests and metrics).</summary>
    public int Subscribers => _subscriptions.Length;

    /// <summary>How many streams are watched (for tests and metrics).</summary>
    public int WatchedStreams => _watches.Count;

    private void Stop(Watch watch)
    {
        while (_watches.TryGetValue(watch.StreamId, out var list))
        {
            var rest = list.Remove(watch);
            if (rest.IsEmpty
                ? _watches.TryRemove(new KeyValuePair<string, ImmutableArray<Watch>>(watch.StreamId, list))
                : _watches.TryUpdate(watch.StreamId, rest, list))
            {
                return;
            }
        }
    }

    /// <summary>One reader's watch on one stream; keeps the newest state posted since it was last read.</summary>
    public sealed class Watch : IDisposable
    {
        private readonly StreamChanges _owner;
        private readonly Lock _lock = new();
        private TaskCompletionSource? _signal;
        private long _version = -1;
        private object? _state;
        private bool _posted;

        internal Watch(StreamChanges owner, string streamId)
        {
            _owner = owner;
            StreamId = streamId;
        }

        public string StreamId { get; }

        internal void Post(long version, object? state)
        {
            TaskCompletionSource? signal;
            lock (_lock)
            {
                if (version <= _version)
                {
                    return; // an older append reported late
                }

                (_version, _state, _posted) = (version, state, true);
                signal = _signal;
                _signal = null;
            }

            signal?.TrySetResult();
        }

        /// <summary>The newest state posted since the last call (null state: unknown), or false after <paramref name="timeout"/>.</summary>
        public async Task<(bool Changed, object? State)> NextAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            Task wait;
            lock (_lock)
            {
                if (_posted)
                {
                    _posted = false;
                    return (true, _state);
                }

                _signal ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _signal.Task;
            }

            try
            {
                await wait.WaitAsync(timeout, cancellationToken);
            }
            catch (TimeoutException)
            {
                return (false, null);
            }

            lock (_lock)
            {
                _posted = false;
                return (true, _state);
            }
        }

        public void Dispose() => _owner.Stop(this);
    }
}
