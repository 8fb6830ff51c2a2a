namespace Propeller.WasmHost.Components.Http;

/// <summary>An incoming HTTP request as <c>wasi:http/types.incoming-request</c> shows it: the body is read in full first.</summary>
public sealed record HttpProxyRequest(
    string Method, string PathWithQuery, string Scheme, string Authority, IReadOnlyList<KeyValuePair<string, byte[]>> Headers, byte[] Body);
