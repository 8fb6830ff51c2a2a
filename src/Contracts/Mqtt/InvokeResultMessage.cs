using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>
/// <c>control/proplet/invoke_results</c> (spec propeller-edge.md §1.12): <see cref="InvocationId"/> is "" when the
/// request had none; <see cref="Results"/> is a string and <see cref="Error"/> null on success.
/// </summary>
public sealed record InvokeResultMessage
{
    [JsonPropertyName("task_id")]
    public required string TaskId { get; init; }

    [JsonPropertyName("invocation_id")]
    public string InvocationId { get; init; } = "";

    [JsonPropertyName("proplet_id")]
    public string? PropletId { get; init; }

    [JsonPropertyName("results")]
    public string Results { get; init; } = "";

    [JsonPropertyName("error")]
    public string? Error { get; init; }
}
