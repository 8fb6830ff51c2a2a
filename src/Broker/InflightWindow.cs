namespace Propeller.Broker;

/// <summary>
/// The permits for QoS 1/2 publishes in flight (pitfall 1: below the broker's Receive Maximum), resized at each connect.
/// A shrink takes permits out as publishes give them back; what it still has to take out is a debt kept under the lock,
/// which a later grow pays off before it adds permits. Before, a grow released its permits while a shrink still waited
/// for some: the shrink took them, and the window stayed below its target for good (16 said, 10 real).
/// </summary>
internal sealed class InflightWindow(int size, CancellationToken stopping) : IDisposable
{
    private readonly SemaphoreSlim _permits = new(size, 65535);
    private readonly Lock _gate = new();
    private int _size = size;
    private int _owed;
    private bool _shrinking;

    /// <summary>Permits free now (tests).</summary>
    internal int Available => _permits.CurrentCount;

    /// <summary>What a shrink still has to take out (tests).</summary>
    internal int Owed
    {
        get
        {
            lock (_gate)
            {
                return _owed;
            }
        }
    }

    public Task WaitAsync(CancellationToken cancellationToken) => _permits.WaitAsync(cancellationToken);

    public void Release() => _permits.Release();

    /// <summary>Gives permits back when <paramref name="target"/> is larger than the window (first paying off what a
    /// shrink still owes), takes them out as they come free when it is smaller.</summary>
    public void Resize(int target)
    {
        lock (_gate)
        {
            var change = target - _size;
            _size = target;
            if (change > 0)
            {
                var paid = Math.Min(change, _owed);
                _owed -= paid;
                if (change > paid)
                {
                    _permits.Release(change - paid);
                }
            }
            else if (change < 0)
            {
                _owed -= change;
                if (!_shrinking)
                {
                    _shrinking = true;
                    _ = Task.Run(ShrinkAsync, CancellationToken.None);
                }
            }
        }
    }

    /// <summary>Takes permits out until nothing is owed; one taken after a grow paid the debt off goes back.</summary>
    private async Task ShrinkAsync()
    {
        try
        {
            while (true)
            {
                lock (_gate)
                {
                    if (_owed == 0)
                    {
                        _shrinking = false;
                        return;
                    }
                }

                await _permits.WaitAsync(stopping);
                lock (_gate)
                {
                    if (_owed > 0)
                    {
                        _owed--;
                    }
                    else
                    {
                        _permits.Release();
                    }
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
            // stopping
        }
    }

    public void Dispose() => _permits.Dispose();
}
