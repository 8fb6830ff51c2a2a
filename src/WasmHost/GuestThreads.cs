namespace Propeller.WasmHost;

/// <summary>
/// Threads that run long guest calls (proplet tasks), so a task that computes for seconds blocks none of the .NET
/// pool's threads (that starved MQTT and timers before: a 30 ms p50 proplet hop) and costs no thread creation once the
/// pool is warm. An idle worker waits for the next call and exits after <see cref="IdleTimeout"/>; at most
/// <see cref="MaxIdle"/> wait. Each has an 8 MiB stack, well above <see cref="WasmEngine.MaxWasmStack"/>.
/// </summary>
public static class GuestThreads
{
    public const int StackSize = 8 << 20;

    private const int MaxIdle = 16;

    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(30);
    private static readonly List<Worker> s_idle = [];
    private static readonly Lock s_lock = new();

    /// <summary>Runs <paramref name="work"/> on a guest thread; the task completes with its result or exception.</summary>
    public static Task<T> RunAsync<T>(Func<T> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Worker? worker = null;
        lock (s_lock)
        {
            if (s_idle.Count > 0)
            {
                worker = s_idle[^1];
                s_idle.RemoveAt(s_idle.Count - 1);
            }
        }

        (worker ?? new Worker()).Hand(() =>
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

    private sealed class Worker : IDisposable
    {
        // No spinning before the wait (spinCount 0): SemaphoreSlim.Wait spins ~140 rounds of sched_yield and Sleep first,
        // which was ~15 % of a busy proplet's CPU on 2 cores (docs/performance.md, session 16). A worker waits for work
        // that comes milliseconds apart, so it sleeps on the event straight away.
        private readonly ManualResetEventSlim _go = new(false, spinCount: 0);
        private Action? _work;

        public Worker() => new Thread(Loop, StackSize) { IsBackground = true, Name = "wasm guest" }.Start();

        /// <summary>Called by the worker's own thread as it exits, when no caller can reach it any more.</summary>
        public void Dispose() => _go.Dispose();

        /// <summary>Gives the worker its next call; only after it took itself from the idle list, so one at a time.</summary>
        public void Hand(Action work)
        {
            _work = work;
            _go.Set();
        }

        private void Loop()
        {
            while (true)
            {
                if (!_go.Wait(IdleTimeout))
                {
                    lock (s_lock)
                    {
                        // Still idle (no caller took it since the wait ended): leave the pool and exit.
                        if (s_idle.Remove(this))
                        {
                            Dispose();
                            return;
                        }
                    }

                    continue;
                }

                // Set once per call (see Hand): reset before the work, so the next Hand's Set is the next wake.
                _go.Reset();
                var work = _work!;
                _work = null;
                work();
                lock (s_lock)
                {
                    if (s_idle.Count >= MaxIdle)
                    {
                        Dispose();
                        return;
                    }

                    s_idle.Add(this);
                }
            }
        }
    }
}
