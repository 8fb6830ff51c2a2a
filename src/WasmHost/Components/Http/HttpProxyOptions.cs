namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// What one request's instance sees besides the request: <c>wasi:cli/environment</c> (the task's env and arguments), the
/// largest response body it may write, and <see cref="Ended"/>, which a <c>pollable.block</c> waits on beside its deadline
/// (the task stopped or the request's time is up), and the most resources (handles the host gave out) the request may
/// hold at once: its table reuses a dropped handle's slot, so only live ones count. <see cref="EndedReason"/> says why
/// <see cref="Ended"/> fired (the time limit, the task's stop, the client gone), for the failure of a request whose
/// <c>block</c> it cut, as the epoch check says it for a request that computes.
/// </summary>
public sealed record HttpProxyOptions(
    IReadOnlyList<KeyValuePair<string, string>> Environment,
    IReadOnlyList<string> Arguments,
    int BodyLimit,
    CancellationToken Ended,
    int ResourceLimit = HttpProxyOptions.DefaultResourceLimit,
    Func<string>? EndedReason = null)
{
    /// <summary>65,536 live handles a request: far beyond what a handler holds (a few dozen), small enough that a guest
    /// hoarding them costs the host a few MiB.</summary>
    public const int DefaultResourceLimit = 1 << 16;
}
