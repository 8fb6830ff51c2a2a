using Propeller.Domain.Common;

namespace Propeller.Domain.Tasks;

/// <summary>
/// What an update changes in a task's spec (PUT /tasks/{id} and the upload, spec §2.6). The decider applies it to the
/// spec the task has when the update is decided, so concurrent updates of different fields all take effect (a merge made
/// before, from the spec a request had read, undid a change committed in between).
/// </summary>
public sealed record TaskSpecPatch
{
    /// <summary>Replaces the name when non-empty.</summary>
    public string? Name { get; init; }

    /// <summary>Replaces the inputs when set (empty clears them).</summary>
    public EquatableArray<string>? Inputs { get; init; }

    /// <summary>Whether <see cref="File"/> replaces the module (null clears it).</summary>
    public bool SetsFile { get; init; }

    public string? File { get; init; }

    /// <summary>Replaces the priority when non-zero.</summary>
    public int Priority { get; init; }

    /// <summary>Whether <see cref="Metadata"/> replaces the metadata (null clears it).</summary>
    public bool SetsMetadata { get; init; }

    public string? Metadata { get; init; }

    /// <summary>Whether <see cref="Schedule"/>, <see cref="IsRecurring"/> and <see cref="Timezone"/> replace the
    /// schedule. A null schedule clears it and is_recurring but keeps the timezone (spec §2.6); a null timezone keeps
    /// the stored one (the original sets "UTC").</summary>
    public bool SetsSchedule { get; init; }

    public string? Schedule { get; init; }

    public bool IsRecurring { get; init; }

    public string? Timezone { get; init; }

    public TaskSpec ApplyTo(TaskSpec current)
    {
        ArgumentNullException.ThrowIfNull(current);

        // A schedule is applied when it differs from the stored one (spec §2.6); the same one sent again changes nothing.
        var schedules = SetsSchedule && !string.Equals(Schedule, current.Schedule, StringComparison.Ordinal);
        return current with
        {
            Name = string.IsNullOrEmpty(Name) ? current.Name : Name,
            Inputs = Inputs ?? current.Inputs,
            File = SetsFile ? File : current.File,
            Priority = Priority == 0 ? current.Priority : Priority,
            Metadata = SetsMetadata ? Metadata : current.Metadata,
            Schedule = schedules ? Schedule : current.Schedule,
            IsRecurring = schedules ? Schedule is not null && IsRecurring : current.IsRecurring,
            Timezone = schedules && Schedule is not null && Timezone is not null ? Timezone : current.Timezone,
        };
    }
}
