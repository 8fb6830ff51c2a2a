using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>registry/proplet</c> (spec propeller-edge.md §1.13): a proplet asks the proxy for the image <c>app_name</c>.</summary>
public sealed record RegistryRequestMessage([property: JsonPropertyName("app_name")] string? AppName);
