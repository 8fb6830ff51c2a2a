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
        private readonly SemaphoreSlim _go = new(0);
        private Action? _work;

        public Worker() => new Thread(Loop, StackSize) { IsBackground = true, Name = "wasm guest" }.Start();

        /// <summary>Called by the worker's own thread as it exits, when no caller can reach it any more.</summary>
        public void Dispose() => _go.Dispose();

        public void Hand(Action work)
        {
            _work = work;
            _go.Release();
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
