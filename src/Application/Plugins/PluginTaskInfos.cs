using System.Text.Json;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Plugins;

/// <summary>Builds what plugins see of a task (spec §7.4 TaskInfo) and records their decisions in event metadata.</summary>
public static class PluginTaskInfos
{
    /// <summary>The metadata header that holds the plugin decisions behind an event (a JSON array).</summary>
    public const string DecisionsHeader = "plugins";

    /// <summary>TaskInfo of a task spec; <paramref name="id"/> is empty during create.</summary>
    public static PluginTaskInfo From(string id, TaskSpec spec, string? propletId = null, DateTimeOffset? createdAt = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return new PluginTaskInfo
        {
            Id = id,
            Name = spec.Name,
            Kind = spec.Kind,
            ImageUrl = spec.ImageUrl,
            Inputs = [.. spec.Inputs],
            CliArgs = spec.CliArgs is { } args ? [.. args] : [],
            Env = spec.Env.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
            PropletId = propletId ?? spec.PropletId,
            Priority = spec.Priority,
            Daemon = spec.Daemon,
            Encrypted = spec.Encrypted,
            CreatedAt = createdAt,
        };
    }

    /// <summary>TaskInfo of a task as folded (null when it has no spec, i.e. does not exist).</summary>
    public static PluginTaskInfo? From(TaskState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return state.Spec is { } spec ? From(state.Id.ToString(), spec, state.PropletId, state.CreatedAt) : null;
    }

    /// <summary>The decisions as metadata headers (a JSON array under <see cref="DecisionsHeader"/>); null when there are none.</summary>
    public static IReadOnlyDictionary<string, string>? Headers(IEnumerable<PluginDecision> decisions)
    {
        ArgumentNullException.ThrowIfNull(decisions);
        var list = decisions.Select(d => new DecisionJson(d.Plugin, d.Hook, d.Allowed, d.Reason, Math.Round(d.Duration.TotalMicroseconds))).ToList();
        return list.Count == 0
            ? null
            : new Dictionary<string, string>(StringComparer.Ordinal) { [DecisionsHeader] = JsonSerializer.Serialize(list) };
    }

    private sealed record DecisionJson(
        [property: System.Text.Json.Serialization.JsonPropertyName("plugin")] string Plugin,
        [property: System.Text.Json.Serialization.JsonPropertyName("hook")] string Hook,
        [property: System.Text.Json.Serialization.JsonPropertyName("allow")] bool Allow,
        [property: System.Text.Json.Serialization.JsonPropertyName("reason")] string? Reason,
        [property: System.Text.Json.Serialization.JsonPropertyName("duration_us")] double DurationUs);
}
