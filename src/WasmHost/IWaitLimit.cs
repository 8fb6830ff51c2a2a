namespace Propeller.WasmHost;

/// <summary>
/// What a guest's waiting host call (<see cref="WasiPoll"/>) may not wait past: the store's data implements it (a plugin
/// call's limit and its caller's token, a task's stop). The epoch check ends guest code only, so a host call that waits
/// must be bounded by the same ends, or a stopped guest sleeps on with its store, instance slot and epoch lease.
/// </summary>
public interface IWaitLimit
{
    /// <summary>The wall-clock limit as a <see cref="System.Diagnostics.Stopwatch"/> timestamp; <see cref="long.MaxValue"/> for none.</summary>
    long Deadline { get; }

    /// <summary>Cancelled when the guest is to end (a stop, a timeout, the caller's cancellation).</summary>
    CancellationToken Cancellation { get; }

    /// <summary>
    /// After a wait: throws what the epoch check would throw when the guest is to end (Wasmtime turns it into the call's
    /// trap); <paramref name="cut"/> is true when <see cref="Deadline"/> came before the wait's own end.
    /// </summary>
    void ThrowIfEnded(bool cut);
}
