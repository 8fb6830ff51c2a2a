namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// What a proxy component answered through <c>response-outparam.set</c>, with the body its <c>outgoing-body</c> stream got
/// by the time <c>handle</c> returned; or, when <see cref="Error"/> is set, why there is no answer (the server sends 500).
/// </summary>
public sealed record HttpProxyResponse(int Status, IReadOnlyList<KeyValuePair<string, byte[]>> Headers, byte[] Body, string? Error)
{
    /// <summary>What the guest wrote to stderr before it failed (up to <see cref="HttpProxyCall.OutputLimit"/>), for the log.</summary>
    public string Stderr { get; init; } = "";

    public static HttpProxyResponse Failed(string error) => new(500, [], [], error);
}
