using System.Text.Json.Serialization;
using Propeller.Contracts.Json;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/manager/invoke</c> (spec propeller-edge.md §1.10): run a latent task once more.</summary>
public sealed record InvokeMessage
{
    [JsonPropertyName("id")]
    public required string Id { get; init; }

    [JsonPropertyName("broadcast")]
    public bool Broadcast { get; init; }

    [JsonPropertyName("proplet_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? PropletId { get; init; }

    [JsonPropertyName("invocation_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? InvocationId { get; init; }

    /// <summary>WAVE-encoded arguments; null or empty keeps the ones the task was deployed with.</summary>
    [JsonPropertyName("inputs")]
    [JsonConverter(typeof(FlexStringsConverter))]
    public IReadOnlyList<string>? Inputs { get; init; }

    /// <summary>Merged over the deployed env; the manager leaves the key out when empty.</summary>
    [JsonPropertyName("env"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? Env { get; init; }
}
