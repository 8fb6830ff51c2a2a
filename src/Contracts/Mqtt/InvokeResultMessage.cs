using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>
/// <c>control/proplet/invoke_results</c> (spec propeller-edge.md §1.12): <see cref="InvocationId"/> is "" when the
/// request had none; <see cref="Results"/> is a string and <see cref="Error"/> null on success. Every string is
/// nullable: System.Text.Json reads a JSON null into a string property whatever its annotation, and an
/// <c>"invocation_id":null</c> from a proplet threw a NullReferenceException where it was read as a string.
/// </summary>
public sealed record InvokeResultMessage
{
    [JsonPropertyName("task_id")]
    public string? TaskId { get; init; }

    [JsonPropertyName("invocation_id")]
    public string? InvocationId { get; init; } = "";

    [JsonPropertyName("proplet_id")]
    public string? PropletId { get; init; }

    [JsonPropertyName("results")]
    public string? Results { get; init; } = "";

    [JsonPropertyName("error")]
    public string? Error { get; init; }
}
