using System.Runtime.ExceptionServices;

namespace Propeller.Wasm.Runtime;

/// <summary>
/// Threads with a known, large stack that run guest code, shared by all stores with the same stack size. A store used
/// to start its own thread: with a store per task that was a thread creation, a stack mapping and its page faults on
/// every task. A call rents an idle worker (or starts one) and hands it the work; the worker goes back to the pool
/// afterwards and exits after <see cref="IdleTimeout"/> without work. <see cref="Run"/> blocks the caller until the
/// work is done; <see cref="RunAsync"/> blocks no thread but the worker.
/// </summary>
internal sealed class GuestThreadPool
{
    /// <summary>Room kept below the stack floor for host functions, the JIT and exception dispatch.</summary>
    private const int StackMargin = 8 << 20;

    /// <summary>Idle workers kept at most; more are let go after their call.</summary>
    private const int MaxIdle = 16;

    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(30);

    private static readonly Lock s_poolsLock = new();
    private static readonly Dictionary<int, GuestThreadPool> s_pools = [];

    private readonly int _stackSize;
    private readonly List<Worker> _idle = [];

    private GuestThreadPool(int stackSize) => _stackSize = stackSize;

    public static GuestThreadPool For(int stackSize)
    {
        lock (s_poolsLock)
        {
            if (!s_pools.TryGetValue(stackSize, out var pool))
            {
                pool = new GuestThreadPool(stackSize);
                s_pools[stackSize] = pool;
            }

            return pool;
        }
    }

    /// <summary>Runs <paramref name="work"/> on a worker with <paramref name="state"/> as its execution state and waits; rethrows what it throws.</summary>
    public void Run(ExecutionState state, GuestThread owner, Action work)
    {
        var worker = Rent();
        var error = worker.Run(state, owner, work);
        Return(worker);
        if (error is not null)
        {
            ExceptionDispatchInfo.Capture(error).Throw();
        }
    }

    /// <summary>Runs <paramref name="work"/> on a worker; the task completes with its result or exception.</summary>
    public Task<T> RunAsync<T>(ExecutionState state, GuestThread owner, Func<T> work)
    {
        var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Rent().Start(state, owner, () =>
        {
            try
            {
                completion.SetResult(work());
            }
#pragma warning disable CA1031 // Handed to the awaiting caller.
            catch (Exception e)
#pragma warning restore CA1031
            {
                completion.SetException(e);
            }
        });
        return completion.Task;
    }

    private Worker Rent()
    {
        lock (_idle)
        {
            if (_idle.Count > 0)
            {
                var worker = _idle[^1];
                _idle.RemoveAt(_idle.Count - 1);
                return worker;
            }
        }

        return new Worker(this);
    }

    private void Return(Worker worker)
    {
        lock (_idle)
        {
            if (_idle.Count < MaxIdle)
            {
                _idle.Add(worker);
                return;
            }
        }

        worker.Stop();
    }

    /// <summary>Takes an idle worker out of the pool so it can exit; false when it was just rented.</summary>
    private bool TryRetire(Worker worker)
    {
        lock (_idle)
        {
            return _idle.Remove(worker);
        }
    }

    private sealed class Worker : IDisposable
    {
        private readonly GuestThreadPool _pool;
        private readonly SemaphoreSlim _go = new(0);
        private readonly SemaphoreSlim _done = new(0);
        private nuint _stackLimit;
        private ExecutionState? _state;
        private GuestThread? _owner;
        private Action? _work;
        private bool _returnsItself;
        private Exception? _error;
        private volatile bool _stopped;

        public Worker(GuestThreadPool pool)
        {
            _pool = pool;
            new Thread(Loop, pool._stackSize) { IsBackground = true, Name = "wasm guest" }.Start();
        }

        /// <summary>Runs <paramref name="work"/> and waits for it; the caller returns the worker to the pool.</summary>
        public Exception? Run(ExecutionState state, GuestThread owner, Action work)
        {
            Hand(state, owner, work, returnsItself: false);
            _done.Wait();
            var error = _error;
            _error = null;
            return error;
        }

        /// <summary>Starts <paramref name="work"/> (which must not throw); the worker returns itself to the pool afterwards.</summary>
        public void Start(ExecutionState state, GuestThread owner, Action work) => Hand(state, owner, work, returnsItself: true);

        public void Stop()
        {
            _stopped = true;
            _go.Release();
        }

        /// <summary>Called by the worker's own thread as it exits, when no call can reach it any more.</summary>
        public void Dispose()
        {
            _go.Dispose();
            _done.Dispose();
        }

        private void Hand(ExecutionState state, GuestThread owner, Action work, bool returnsItself)
        {
            _state = state;
            _owner = owner;
            _work = work;
            _returnsItself = returnsItself;
            _error = null;
            _go.Release();
        }

        private unsafe void Loop()
        {
            byte marker = 0;
            _stackLimit = (nuint)(&marker) - (nuint)_pool._stackSize + StackMargin;
            while (true)
            {
                if (!_go.Wait(IdleTimeout))
                {
                    if (_pool.TryRetire(this))
                    {
                        Dispose();
                        return;
                    }

                    continue;
                }

                if (_stopped)
                {
                    Dispose();
                    return;
                }

                var state = _state!;
                var work = _work!;
                var returnsItself = _returnsItself;
                state.StackLimit = _stackLimit;
                ExecutionState.Current = state;
                GuestThread.Current = _owner;
                try
                {
                    work();
                }
#pragma warning disable CA1031 // Everything is handed back to the calling thread and rethrown there.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    _error = e;
                }
                finally
                {
                    ExecutionState.Current = null;
                    GuestThread.Current = null;
                    _state = null;
                    _owner = null;
                    _work = null;
                }

                if (returnsItself)
                {
                    _pool.Return(this);
                }
                else
                {
                    _done.Release();
                }
            }
        }
    }
}
