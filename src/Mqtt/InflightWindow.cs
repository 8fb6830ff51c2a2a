namespace Propeller.Mqtt;

/// <summary>Limits unacknowledged outgoing QoS 1/2 publishes. Waiters are served first in, first out, and a granted
/// waiter continues synchronously on the releasing thread, so publishes leave in the order they were called.</summary>
internal sealed class InflightWindow(int limit)
{
    private readonly Lock _lock = new();
    private readonly Queue<TaskCompletionSource> _waiters = new();
    private int _limit = limit;
    private int _used;

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
