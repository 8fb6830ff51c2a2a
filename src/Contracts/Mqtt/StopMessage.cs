using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>
/// <c>control/manager/stop</c> (spec propeller-edge.md §1.9). <paramref name="Attempt"/> is our extension
/// (docs/compatibility.md): the attempt the stop ends, so that our proplet can tell a stop from a start that arrives
/// after it, or a late stop from a newer attempt's run; the original proplet ignores it. <paramref name="Dispatch"/> (ours
/// too) narrows it to one dispatch of the attempt: a run left on a proplet after the task was re-dispatched (keeping
/// its attempt), stopped without stopping, or refusing, a later dispatch of the attempt there.
/// </summary>
public sealed record StopMessage(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("broadcast")] bool Broadcast,
    [property: JsonPropertyName("proplet_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? PropletId,
    [property: JsonPropertyName("attempt"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Attempt = null,
    [property: JsonPropertyName("dispatch"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Dispatch = null);
