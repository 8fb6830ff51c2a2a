using System.Text.Json;
using Propeller.Application.EventStore;
using Propeller.Contracts.Tasks;

namespace Propeller.Manager.Http;

/// <summary>A task's fields PostgreSQL cannot store, refused before any command runs (<see cref="StorableText"/>).</summary>
internal static class StorableTaskJson
{
    /// <summary>The task's string fields, by their JSON names.</summary>
    private static readonly (string Name, Func<TaskJson, bool> HoldsNul)[] Strings =
    [
        ("id", t => In(t.Id)), ("name", t => In(t.Name)), ("kind", t => In(t.Kind)), ("image_url", t => In(t.ImageUrl)), ("file", t => In(t.File)),
        ("cli_args", t => t.CliArgs?.Any(In) == true), ("inputs", t => t.Inputs?.Any(In) == true),
        ("env", t => t.Env?.Any(p => In(p.Key) || In(p.Value)) == true), ("kbs_resource_path", t => In(t.KbsResourcePath)),
        ("proplet_id", t => In(t.PropletId)), ("depends_on", t => t.DependsOn?.Any(In) == true), ("run_if", t => In(t.RunIf)),
        ("workflow_id", t => In(t.WorkflowId)), ("job_id", t => In(t.JobId)), ("error", t => In(t.Error)), ("mode", t => In(t.Mode)),
        ("schedule", t => In(t.Schedule)), ("timezone", t => In(t.Timezone)), ("hal_storage_path", t => In(t.HalStoragePath)),
    ];

    /// <summary>The task's JSON fields, by their JSON names.</summary>
    private static readonly (string Name, Func<TaskJson, JsonElement?> Value)[] Json =
        [("metadata", t => t.Metadata), ("monitoring_profile", t => t.MonitoringProfile), ("results", t => t.Results)];

    private static bool In(string? text) => StorableText.HoldsNul(text);

    /// <summary>The first field of <paramref name="task"/> PostgreSQL could not store and why ("metadata must not contain
    /// \u0000"), or null.</summary>
    public static string? Problem(TaskJson task)
    {
        ArgumentNullException.ThrowIfNull(task);
        foreach (var (name, holdsNul) in Strings)
        {
            if (holdsNul(task))
            {
                return $"{name} {StorableText.Nul}";
            }
        }

        foreach (var (name, value) in Json)
        {
            if (value(task) is { } element && StorableText.Problem(element) is { } problem)
            {
                return $"{name} {problem}";
            }
        }

        return null;
    }
}
