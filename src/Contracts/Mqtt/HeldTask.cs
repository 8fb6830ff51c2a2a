using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>A task a proplet holds, in its discovery's <c>tasks</c> (<see cref="DiscoveryMessage.Tasks"/>): the id and
/// the attempt and dispatch its start named (none from the original manager).</summary>
public sealed record HeldTask(
    [property: JsonPropertyName("task_id")] string TaskId,
    [property: JsonPropertyName("attempt"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Attempt,
    [property: JsonPropertyName("dispatch"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Dispatch = null);
