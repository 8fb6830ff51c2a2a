namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// Group commit for appends (ADR 0006): appends that arrive while a group is being committed wait and then share
/// the next transaction, so under load one BEGIN/batch/COMMIT carries many streams' appends instead of one each.
/// An append that finds a free slot starts at once (no waiting when the store is idle). At most
/// <c>maxConcurrentGroups</c> groups run at a time; a group never holds two appends of one stream (the second waits
/// for the next group), so a stream's appends still commit one after another in arrival order.
/// </summary>
/// <typeparam name="TItem">What one append needs to be committed.</typeparam>
/// <typeparam name="TResult">What one append returns.</typeparam>
internal sealed class AppendGroupCommitter<TItem, TResult>
{
    private readonly Func<TItem, string> _streamOf;
    private readonly Func<IReadOnlyList<TItem>, Task<TResult[]>> _commit;
    private readonly int _maxConcurrentGroups;
    private readonly int _maxGroupSize;
    private readonly List<Pending> _pending = [];
    private int _running;
    private long _groups;
    private long _grouped;

    /// <param name="streamOf">The stream an item appends to.</param>
    /// <param name="commit">
    /// Commits a group in one transaction and returns one result per item, in order; throws when the transaction
    /// failed (then nothing of the group was written). A group of one is an ordinary append.
    /// </param>
    /// <param name="maxConcurrentGroups">How many groups may be committed at once.</param>
    /// <param name="maxGroupSize">The most appends in one group.</param>
    public AppendGroupCommitter(Func<TItem, string> streamOf, Func<IReadOnlyList<TItem>, Task<TResult[]>> commit, int maxConcurrentGroups, int maxGroupSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConcurrentGroups, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxGroupSize, 1);
        _streamOf = streamOf;
        _commit = commit;
        _maxConcurrentGroups = maxConcurrentGroups;
        _maxGroupSize = maxGroupSize;
    }

    /// <summary>Groups committed so far (for tests and metrics).</summary>
    public long Groups => Interlocked.Read(ref _groups);

    /// <summary>Appends committed in groups of more than one.</summary>
    public long Grouped => Interlocked.Read(ref _grouped);

    /// <summary>
    /// Commits <paramref name="item"/>, alone or with others. Cancellation counts only while the item waits for a
    /// group; once its group is being committed, the outcome is awaited (a cancelled wait would not undo a commit).
    /// </summary>
    public Task<TResult> CommitAsync(TItem item, CancellationToken cancellationToken)
    {
        var pending = new Pending(item, _streamOf(item), cancellationToken);
        var start = false;
        lock (_pending)
        {
            _pending.Add(pending);
            if (_running < _maxConcurrentGroups)
            {
                _running++;
                start = true;
            }
        }

        if (start)
        {
            _ = Task.Run(DrainAsync, CancellationToken.None);
        }

        return pending.Completion.Task;
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            List<Pending> group;
            lock (_pending)
            {
                group = TakeGroup();
                if (group.Count == 0)
                {
                    _running--;
                    return;
                }
            }

            await RunAsync(group).ConfigureAwait(false);
        }
    }

    /// <summary>Under the lock: the oldest pending items, at most one per stream, cancelled ones dropped.</summary>
    private List<Pending> TakeGroup()
    {
        var group = new List<Pending>(Math.Min(_pending.Count, _maxGroupSize));
        HashSet<string>? streams = null;
        var kept = 0;
        for (var i = 0; i < _pending.Count; i++)
        {
            var candidate = _pending[i];
            if (candidate.CancellationToken.IsCancellationRequested)
            {
                candidate.Completion.TrySetCanceled(candidate.CancellationToken);
                continue;
            }

            streams ??= new HashSet<string>(StringComparer.Ordinal);
            if (group.Count < _maxGroupSize && streams.Add(candidate.Stream))
            {
                group.Add(candidate);
            }
            else
            {
                _pending[kept++] = candidate;
            }
        }

        _pending.RemoveRange(kept, _pending.Count - kept);
        return group;
    }

    private async Task RunAsync(List<Pending> group)
    {
        try
        {
            var results = await _commit([.. group.Select(p => p.Item)]).ConfigureAwait(false);
            Interlocked.Increment(ref _groups);
            if (group.Count > 1)
            {
                Interlocked.Add(ref _grouped, group.Count);
            }

            for (var i = 0; i < group.Count; i++)
            {
                group[i].Completion.TrySetResult(results[i]);
            }
        }
        catch (Exception) when (group.Count > 1)
        {
            // One append's failure (a version conflict, most likely) rolled back the whole group: commit each alone,
            // so each gets its own outcome.
            await Task.WhenAll(group.Select(p => RunAsync([p]))).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            group[0].Completion.TrySetException(ex);
        }
    }

    private sealed class Pending(TItem item, string stream, CancellationToken cancellationToken)
    {
        public TItem Item { get; } = item;

        public string Stream { get; } = stream;

        public CancellationToken CancellationToken { get; } = cancellationToken;

        public TaskCompletionSource<TResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
