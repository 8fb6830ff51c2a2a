using System.Runtime.ExceptionServices;

namespace Propeller.Wasm.Runtime;

/// <summary>
/// The dedicated thread with a known, large stack on which a store runs guest code, so that deep recursion ends in the
/// "call stack exhausted" trap (depth counter plus a stack floor) instead of an uncatchable StackOverflowException.
/// Calls made from the guest thread itself (host function re-entering wasm) run inline.
/// </summary>
internal sealed class GuestThread(ExecutionState state, int stackSize) : IDisposable
{
    /// <summary>Room kept below the stack floor for host functions, the JIT and exception dispatch.</summary>
    private const int StackMargin = 8 << 20;

    /// <summary>
    /// An idle guest thread exits after this long (and is restarted on the next call), so a store that is dropped without
    /// Dispose does not keep a thread, and through it the store, alive for ever.
    /// </summary>
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(30);

    [ThreadStatic]
    private static GuestThread? t_current;

    private readonly Lock _callLock = new();
    private readonly SemaphoreSlim _go = new(0);
    private readonly SemaphoreSlim _done = new(0);
    private Thread? _thread;
    private Action? _work;
    private Exception? _error;
    private volatile bool _disposed;

    public void Run(Action work)
    {
        if (t_current == this)
        {
            work();
            return;
        }

        lock (_callLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_thread is null)
            {
                _thread = new Thread(Loop, stackSize) { IsBackground = true, Name = "wasm guest" };
                _thread.Start();
            }

            _work = work;
            _error = null;
            _go.Release();
            _done.Wait();
            var error = _error;
            _error = null;
            _work = null;
            if (error is not null)
            {
                ExceptionDispatchInfo.Capture(error).Throw();
            }
        }
    }

    public void Dispose()
    {
        lock (_callLock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (_thread is not null)
            {
                _go.Release();
            }
        }
    }

    private unsafe void Loop()
    {
        t_current = this;
        ExecutionState.Current = state;
        byte marker = 0;
        state.StackLimit = (nuint)(&marker) - (nuint)stackSize + StackMargin;
        while (true)
        {
            if (!_go.Wait(IdleTimeout))
            {
                // Run() holds _callLock from starting the thread until the call completes, so holding it here means no
                // call is in flight and none can start until _thread is cleared.
                if (!_callLock.TryEnter())
                {
                    continue;
                }

                try
                {
                    if (_go.CurrentCount == 0)
                    {
                        _thread = null;
                        return;
                    }
                }
                finally
                {
                    _callLock.Exit();
                }

                continue;
            }

            if (_disposed)
            {
                return;
            }

            try
            {
                _work!();
            }
#pragma warning disable CA1031 // Everything is handed back to the calling thread and rethrown there.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _error = e;
            }

            _done.Release();
        }
    }
}
