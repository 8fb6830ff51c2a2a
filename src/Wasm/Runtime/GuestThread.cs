namespace Propeller.Wasm.Runtime;

/// <summary>
/// Where a store runs guest code: a thread with a known, large stack (from <see cref="GuestThreadPool"/>), so that deep
/// recursion ends in the "call stack exhausted" trap (depth counter plus a stack floor) instead of an uncatchable
/// StackOverflowException. Calls are serialised per store; calls made from guest code itself (a host function
/// re-entering wasm of the same store) run inline.
/// </summary>
internal sealed class GuestThread(ExecutionState state, int stackSize) : IDisposable
{
    [ThreadStatic]
    private static GuestThread? t_current;

    private readonly SemaphoreSlim _calls = new(1, 1);
    private readonly GuestThreadPool _pool = GuestThreadPool.For(stackSize);
    private volatile bool _disposed;

    /// <summary>The store whose guest code the current thread is running, if any.</summary>
    internal static GuestThread? Current
    {
        get => t_current;
        set => t_current = value;
    }

    public void Run(Action work)
    {
        if (t_current == this)
        {
            work();
            return;
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        _calls.Wait();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _pool.Run(state, this, work);
        }
        finally
        {
            _calls.Release();
        }
    }

    public async Task<T> RunAsync<T>(Func<T> work)
    {
        if (t_current == this)
        {
            return work();
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        await _calls.WaitAsync().ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return await _pool.RunAsync(state, this, work).ConfigureAwait(false);
        }
        finally
        {
            _calls.Release();
        }
    }

    /// <summary>Later calls throw <see cref="ObjectDisposedException"/>; a call in flight finishes.</summary>
    public void Dispose() => _disposed = true;
}
