using System.Text.Json;
using Propeller.Application.Tasks;
using Propeller.Contracts.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Tasks;

/// <summary>Between the wire task (spec §2.1) and the domain: whitelisting on the way in, redaction on the way out.</summary>
internal static class TaskMapping
{
    /// <summary>Create: only the client-settable fields; kind defaults to standard and priority 0 to 50.</summary>
    public static TaskSpec ToSpec(TaskJson json) => new()
    {
        Name = json.Name,
        Kind = string.IsNullOrEmpty(json.Kind) ? TaskSpec.StandardKind : json.Kind,
        ImageUrl = NullIfEmpty(json.ImageUrl),
        File = NullIfEmpty(Base64Text.CanonicalOrAsGiven(json.File)),
        // A null item becomes "" as the original's Go decoding makes it (the proplet refuses a null).
        CliArgs = json.CliArgs is null ? null : new EquatableArray<string>([.. json.CliArgs.Select(a => a ?? "")]),
        Inputs = new EquatableArray<string>(json.Inputs ?? []),
        Env = new EquatableMap(json.Env?.ToDictionary(p => p.Key, p => p.Value ?? "", StringComparer.Ordinal) ?? new Dictionary<string, string>()),
        Daemon = json.Daemon,
        Latent = json.Latent,
        Encrypted = json.Encrypted,
        KbsResourcePath = NullIfEmpty(json.KbsResourcePath),
        PropletId = NullIfEmpty(json.PropletId),
        DependsOn = new EquatableArray<string>(json.DependsOn ?? []),
        RunIf = NullIfEmpty(json.RunIf),
        WorkflowId = NullIfEmpty(json.WorkflowId),
        MonitoringProfile = Profile(json.MonitoringProfile),
        Mode = NullIfEmpty(json.Mode),
        Schedule = NullIfEmpty(json.Schedule),
        IsRecurring = json.IsRecurring,
        Timezone = NullIfEmpty(json.Timezone),
        Broadcast = json.Broadcast,
        Priority = json.Priority == 0 ? TaskSpec.DefaultPriority : json.Priority,
        Metadata = RawObject(json.Metadata),
        HalStoragePath = json.HalStoragePath,
    };

    /// <summary>
    /// Update (spec §2.6): name when non-empty, inputs when the key is present (null too: cleared), file when present,
    /// priority when non-zero, metadata when present, schedule when present ("" clears it and is_recurring, keeping the
    /// timezone). Unlike the original, a PUT without <c>schedule</c> keeps the schedule, and one without
    /// <c>timezone</c> keeps the zone (the original sets "UTC"; <c>"timezone": ""</c> still does): quirks fixed,
    /// docs/compatibility.md. The decider applies it to the task's spec as it is then.
    /// </summary>
    public static TaskSpecPatch ToPatch(TaskJson json) => new()
    {
        Name = json.Name,
        Inputs = json.Inputs is null ? null : new EquatableArray<string>(json.Inputs),
        SetsFile = json.File is not null,
        File = NullIfEmpty(Base64Text.CanonicalOrAsGiven(json.File)),
        Priority = json.Priority,
        SetsMetadata = json.Metadata is not null,
        Metadata = RawObject(json.Metadata),
        SetsSchedule = json.Schedule is not null,
        Schedule = NullIfEmpty(json.Schedule),
        IsRecurring = json.IsRecurring,
        Timezone = json.Timezone is null ? null : NullIfEmpty(json.Timezone) ?? "UTC",
    };

    public static TaskJson ToJson(TaskState state)
    {
        var spec = state.Spec ?? throw new InvalidOperationException("a task view without a spec");
        return new TaskJson
        {
            Id = state.Id.ToString(),
            Name = spec.Name,
            Kind = spec.Kind,
            State = (int)state.Status,
            ImageUrl = spec.ImageUrl,
            File = Redact(spec.File),
            CliArgs = spec.CliArgs is { } args ? [.. args] : null,
            Inputs = spec.Inputs.Count == 0 ? null : [.. spec.Inputs],
            Env = spec.Env.Count == 0 ? null : spec.Env.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal),
            Daemon = spec.Daemon,
            Latent = spec.Latent,
            Encrypted = spec.Encrypted,
            KbsResourcePath = spec.KbsResourcePath,
            PropletId = spec.Broadcast && state.PropletId == TaskSpec.BroadcastTarget ? null : state.PropletId, // as the original: none
            DependsOn = spec.DependsOn.Count == 0 ? null : [.. spec.DependsOn],
            RunIf = spec.RunIf,
            WorkflowId = spec.WorkflowId,
            JobId = spec.JobId,
            Results = Parse(state.Results),
            Error = state.Error,
            MonitoringProfile = Parse(MonitoringProfileJson.NormalizeStored(spec.MonitoringProfile)),
            StartTime = state.StartTime ?? default,
            FinishTime = state.FinishTime ?? default,
            CreatedAt = state.CreatedAt ?? default,
            UpdatedAt = state.UpdatedAt ?? default,
            Mode = spec.Mode,
            Schedule = spec.Schedule,
            IsRecurring = spec.IsRecurring,
            Timezone = spec.Timezone,
            Broadcast = spec.Broadcast,
            Priority = spec.Priority,
            Metadata = Parse(spec.Metadata),
            HalStoragePath = spec.HalStoragePath,
        };
    }

    /// <summary>The original's redaction: ≤ 20 characters verbatim, else the first and last 10 around "&lt;REDACTED&gt;" (a
    /// module the view holds by reference shows the same, from the reference: ADR 0018).</summary>
    public static string? Redact(string? base64) => base64 switch
    {
        null or "" => null,
        _ when ModuleReference.IsReference(base64) => string.Concat(ModuleReference.Ends(base64).First, "<REDACTED>", ModuleReference.Ends(base64).Last),
        { Length: <= 20 } => base64,
        _ => string.Concat(base64.AsSpan(0, 10), "<REDACTED>", base64.AsSpan(base64.Length - 10)),
    };

    /// <summary>Results are stored as JSON text; anything that is not JSON is returned as a JSON string.</summary>
    public static JsonElement? Parse(string? json)
    {
        if (json is null)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<JsonElement>(json);
        }
        catch (JsonException)
        {
            return JsonSerializer.SerializeToElement(json);
        }
    }

    /// <summary>The profile with all its keys (the validator refuses one that cannot be normalised; kept as sent until then).</summary>
    private static string? Profile(JsonElement? element) =>
        element is { ValueKind: JsonValueKind.Object } value
            ? MonitoringProfileJson.TryNormalize(value, out var json, out _) ? json : value.GetRawText()
            : null;

    private static string? RawObject(JsonElement? element) =>
        element is { ValueKind: JsonValueKind.Object } value ? value.GetRawText() : null;

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
