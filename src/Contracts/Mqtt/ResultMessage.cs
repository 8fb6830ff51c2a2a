using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/proplet/results</c> (spec propeller-edge.md §1.11): results is any JSON (a string from the Rust proplet).</summary>
public sealed record ResultMessage
{
    [JsonPropertyName("task_id")]
    public string? TaskId { get; init; }

    [JsonPropertyName("proplet_id")]
    public string? PropletId { get; init; }

    [JsonPropertyName("results")]
    public JsonElement? Results { get; init; }

    [JsonPropertyName("error")]
    public JsonElement? Error { get; init; }

    /// <summary>
    /// Our extension (docs/compatibility.md): the <c>attempt</c> of the start this result answers, echoed by our
    /// proplet; the manager ignores a result of another attempt. Absent from the original proplet's results.
    /// </summary>
    [JsonPropertyName("attempt"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Attempt { get; init; }

    /// <summary>
    /// Our extension (docs/compatibility.md): which dispatch of the attempt the result's run is (the start's additive
    /// <c>dispatch</c>, or a later one's that found the run here), echoed by our proplet; the manager ignores a result of
    /// an earlier dispatch of the task's attempt (a run it moved away from, or one whose stop it sent while the task waited).
    /// </summary>
    [JsonPropertyName("dispatch"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Dispatch { get; init; }

    /// <summary>
    /// Our extension (docs/compatibility.md): true on our proplet's "started" result of a daemon or a served HTTP proxy,
    /// whose run goes on after it until a stop; false on the result our proplet sends when such a run ends on its own
    /// (exits, traps), which the original proplet never sends; absent otherwise, and from the original proplet's results
    /// (the manager then takes a daemon's result for a "started" one).
    /// </summary>
    [JsonPropertyName("running"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? Running { get; init; }
}
