namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// What one request's instance sees besides the request: <c>wasi:cli/environment</c> (the task's env and arguments), the
/// largest response body it may write, and <see cref="Ended"/>, which a <c>pollable.block</c> waits on beside its deadline
/// (the task stopped or the request's time is up).
/// </summary>
public sealed record HttpProxyOptions(
    IReadOnlyList<KeyValuePair<string, string>> Environment, IReadOnlyList<string> Arguments, int BodyLimit, CancellationToken Ended);
