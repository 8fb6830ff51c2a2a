using System.Text.Json;
using Propeller.Contracts.Tasks;

namespace Propeller.Manager.Http;

/// <summary>
/// PostgreSQL cannot store U+0000 in text or jsonb (22P05), and a command that fails on one can leave its pooled
/// connection out of step with the server (Npgsql 10.0.0–10.0.3 with auto-prepared statements: the next command on it
/// reads another statement's rows, "Received unexpected backend message DataRow"), failing later commands of other
/// requests. So a value holding one is refused before any command runs, never sent to PostgreSQL to refuse.
/// </summary>
internal static class NulText
{
    public static bool In(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal);

    public static bool In(JsonElement? element) => element is { } value && In(value);

    public static bool In(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => In(element.GetString()),
        JsonValueKind.Object => element.EnumerateObject().Any(p => In(p.Name) || In(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().Any(In),
        _ => false,
    };

    /// <summary>The first field of <paramref name="task"/> (its JSON name) holding a U+0000, or null.</summary>
    public static string? Field(TaskJson task)
    {
        ArgumentNullException.ThrowIfNull(task);
        (string Name, bool Holds)[] fields =
        [
            ("id", In(task.Id)), ("name", In(task.Name)), ("kind", In(task.Kind)), ("image_url", In(task.ImageUrl)), ("file", In(task.File)),
            ("cli_args", task.CliArgs?.Any(In) == true), ("inputs", task.Inputs?.Any(In) == true),
            ("env", task.Env?.Any(p => In(p.Key) || In(p.Value)) == true), ("kbs_resource_path", In(task.KbsResourcePath)),
            ("proplet_id", In(task.PropletId)), ("depends_on", task.DependsOn?.Any(In) == true), ("run_if", In(task.RunIf)),
            ("workflow_id", In(task.WorkflowId)), ("job_id", In(task.JobId)), ("results", In(task.Results)), ("error", In(task.Error)),
            ("monitoring_profile", In(task.MonitoringProfile)), ("mode", In(task.Mode)), ("schedule", In(task.Schedule)),
            ("timezone", In(task.Timezone)), ("metadata", In(task.Metadata)), ("hal_storage_path", In(task.HalStoragePath)),
        ];
        return fields.FirstOrDefault(f => f.Holds).Name;
    }
}
