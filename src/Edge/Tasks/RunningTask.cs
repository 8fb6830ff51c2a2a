using System.Diagnostics;

namespace Propeller.Edge.Tasks;

/// <summary>
/// A task between its start and its result: the handle a stop, a timeout or shutdown uses to end it. Ending cancels the
/// token (fetches and waits for a slot), sets <see cref="Reason"/> (which the in-process runtime's epoch check sees
/// within one tick: the guest is ended at its next function entry or loop header) and kills an external runtime process.
/// </summary>
public sealed class RunningTask(StartRequest request) : IDisposable
{
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource<string> _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Process? _process;
    private Task _guest = Task.CompletedTask;
    private int _reason;
    private readonly AdoptedDispatch _dispatch = new(request.Message.Dispatch);

    public StartRequest Request { get; } = request;

    /// <summary>Which dispatch of its attempt this run is: its start's, or a later one's that found it running here
    /// (<see cref="Adopt"/>).</summary>
    public int? Dispatch => _dispatch.Value;

    /// <summary>The run's attempt and dispatch, when its start named both.</summary>
    internal Run? Run => Request.Attempt is { } attempt && Dispatch is { } dispatch ? new Run(attempt, dispatch) : null;

    /// <summary>The task was dispatched here again while this run goes on (the proplet had been taken for gone): the
    /// manager has that later dispatch running here now, so this run is it from here on (what the proplet reports
    /// holding, a stop of the earlier dispatch sparing it, its finished run remembered).</summary>
    public void Adopt(int dispatch) => _dispatch.Adopt(dispatch);

    public string Id => Request.Id;

    public CancellationToken Aborted => _abort.Token;

    public StopReason Reason => (StopReason)Volatile.Read(ref _reason);

    /// <summary>The binary's SHA-256 (lowercase hex) when the fetch computed it from the bytes (verified proxy chunks):
    /// the compile cache's key, so the runtime need not hash the binary again (<see cref="Fetching.FetchedBinary"/>).</summary>
    public string? BinarySha256 { get; set; }

    /// <summary>
    /// Completed with the task's results when its runtime reports success before the task ends: an HTTP proxy component
    /// is "started at port N" once it listens and then serves until stopped (spec §2.11).
    /// </summary>
    public Task<string> Started => _started.Task;

    public void ReportStarted(string results) => _started.TrySetResult(results);

    /// <summary>True once its "started" result (a daemon's, a served HTTP proxy's) is being published: the run goes on,
    /// and a start of its attempt again gets that result again.</summary>
    public bool Serving { get; set; }

    /// <summary>
    /// Completes when the thread that runs its guest has returned (at once when there is none). A stopped guest blocked
    /// in a host call (a preview 2 <c>wasi:io/poll</c> wait) or compiling is reported stopped after a grace period while
    /// its thread goes on, holding its store, pool instance and epoch lease: its concurrency slot is given back only
    /// after this.
    /// </summary>
    public Task GuestReturned => Volatile.Read(ref _guest);

    /// <summary>Set by the runtime to the task of the thread it runs the guest on.</summary>
    internal void RunsGuest(Task guest) => Volatile.Write(ref _guest, guest);

    /// <summary>Completed once the task has ended and let go of its id (disposed).</summary>
    public Task Ended => _ended.Task;

    /// <summary>Process id of an external runtime child, for task metrics (null in-process).</summary>
    public int? ProcessId
    {
        get
        {
            lock (_lock)
            {
                try
                {
                    return _process is { HasExited: false } p ? p.Id : null;
                }
                catch (InvalidOperationException)
                {
                    return null;
                }
            }
        }
    }

    /// <summary>Ends the task; the first reason wins. Safe from any thread, any number of times.</summary>
    public void Abort(StopReason reason)
    {
        if (Interlocked.CompareExchange(ref _reason, (int)reason, (int)StopReason.None) != (int)StopReason.None)
        {
            return;
        }

        Process? process;
        lock (_lock)
        {
            process = _process;
        }

        try
        {
            _abort.Cancel();
        }
        catch (ObjectDisposedException)
        {
            return;
        }

        Kill(process);
    }

    /// <summary>Attaches the external runtime process; kills it at once when the task was already ended.</summary>
    public void Attach(Process? process)
    {
        lock (_lock)
        {
            _process = process;
        }

        if (process is not null && Reason != StopReason.None)
        {
            Kill(process);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _process = null;
        }

        _abort.Dispose();
        _ended.TrySetResult();
    }

    private static void Kill(Process? process)
    {
        try
        {
            process?.Kill(entireProcessTree: true);
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            // already gone
        }
    }
}
