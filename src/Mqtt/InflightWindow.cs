namespace Propeller.Mqtt;

/// <summary>Limits unacknowledged outgoing QoS 1/2 publishes. Waiters are served first in, first out, and a granted
/// waiter continues synchronously on the releasing thread, so publishes leave in the order they were called.</summary>
internal sealed class InflightWindow(int limit)
{
    private readonly Lock _lock = new();
    private readonly Queue<TaskCompletionSource> _waiters = new();
    private int _limit = limit;
    private int _used;
    private Func<Exception>? _closed;

    public int InUse
    {
        get
        {
            lock (_lock)
            {
                return _used;
            }
        }
    }

    public ValueTask AcquireAsync(CancellationToken cancellationToken)
    {
        TaskCompletionSource waiter;
        lock (_lock)
        {
            if (_closed is not null)
            {
                return ValueTask.FromException(_closed());
            }

            if (_used < _limit && _waiters.Count == 0)
            {
                _used++;
                return ValueTask.CompletedTask;
            }

            waiter = new TaskCompletionSource();
            _waiters.Enqueue(waiter);
        }

        return WaitAsync(waiter, cancellationToken);
    }

    private static async ValueTask WaitAsync(TaskCompletionSource waiter, CancellationToken cancellationToken)
    {
        await using (cancellationToken.Register(static state => ((TaskCompletionSource)state!).TrySetCanceled(), waiter))
        {
            await waiter.Task;
        }
    }

    public void Release()
    {
        while (true)
        {
            TaskCompletionSource next;
            lock (_lock)
            {
                if (_closed is not null)
                {
                    return;
                }

                if (_used > _limit || !_waiters.TryDequeue(out next!))
                {
                    _used--;
                    return;
                }
            }

            if (next.TrySetResult())
            {
                return;
            }
        }
    }

    /// <summary>Fails every waiter and every later acquire with a new exception from <paramref name="error"/>, and
    /// forgets the slots in use (their publishes are failed by the caller). Waiters fail here rather than being granted
    /// one by one, so a long queue never turns into a deep chain of inline continuations. Each waiter gets its own
    /// exception: a shared instance would collect one more stack trace with every await that rethrows it.</summary>
    public void Close(Func<Exception> error)
    {
        TaskCompletionSource[] waiters;
        lock (_lock)
        {
            _closed = error;
            _used = 0;
            waiters = [.. _waiters];
            _waiters.Clear();
        }

        foreach (var waiter in waiters)
        {
            waiter.TrySetException(error());
        }
    }

    public void Open()
    {
        lock (_lock)
        {
            _closed = null;
            _used = 0;
        }
    }

    /// <summary>Changes the limit (the broker's Receive Maximum); grants waiters if it grew.</summary>
    public void SetLimit(int limit)
    {
        while (true)
        {
            TaskCompletionSource next;
            lock (_lock)
            {
                _limit = limit;
                if (_used >= _limit || !_waiters.TryDequeue(out next!))
                {
                    return;
                }

                _used++;
            }

            if (!next.TrySetResult())
            {
                lock (_lock)
                {
                    _used--;
                }
            }
        }
    }
}
