using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>registry/failure</c> (proxy → proplets), our addition (docs/proxy.md): the proxy could not deliver the image
/// <c>app_name</c>, with the reason. The original proxy only logged such failures and its proplets waited 60 s; old
/// proplets do not subscribe to this topic (and its name does not contain <c>registry/server</c>, which they match by
/// substring).</summary>
public sealed record RegistryFailureMessage(
    [property: JsonPropertyName("app_name")] string? AppName,
    [property: JsonPropertyName("error")] string? Error);
