using System.Text.Json;
using Propeller.Application.EventStore;
using Propeller.Contracts.Tasks;

namespace Propeller.Manager.Http;

/// <summary>A task's fields PostgreSQL cannot store, refused before any command runs (<see cref="StorableText"/>).</summary>
internal static class NulText
{
    public static bool In(string? text) => StorableText.HoldsNul(text);

    public static bool In(JsonElement? element) => element is { } value && StorableText.HoldsNul(value);

    /// <summary>The first field of <paramref name="task"/> PostgreSQL could not store, with what is wrong with it, or null.</summary>
    public static string? Unstorable(TaskJson task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (Field(task) is { } field)
        {
            return $"{field} must not contain \\u0000";
        }

        (string Name, JsonElement? Value)[] json = [("metadata", task.Metadata), ("monitoring_profile", task.MonitoringProfile), ("results", task.Results)];
        return json.Select(f => f.Value is { } value && StorableText.Problem(value) is { } problem ? $"{f.Name} {problem}" : null).FirstOrDefault(p => p is not null);
    }

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
