using System.Text.Json.Serialization;
using Propeller.Contracts.Tasks;

namespace Propeller.Contracts.Events;

/// <summary>
/// The data of a <c>task</c> event on <c>GET /events</c>: the task as committed at <see cref="Version"/> (as
/// <c>GET /tasks/{id}</c> shows it), or <see cref="Deleted"/> without a task.
/// </summary>
public sealed record TaskChangedJson(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("deleted"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] bool Deleted,
    [property: JsonPropertyName("task"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] TaskJson? Task);
