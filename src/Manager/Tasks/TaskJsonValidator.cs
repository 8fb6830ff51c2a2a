using System.Text.Json;
using FluentValidation;
using Propeller.Contracts.Tasks;
using Propeller.Manager.Http;

namespace Propeller.Manager.Tasks;

/// <summary>Shape checks of a task body (spec §1.3, POST /tasks 400 list), before any command runs.</summary>
internal sealed class TaskJsonValidator : AbstractValidator<TaskJson>
{
    /// <summary>The original's limit: the metadata as Go's json.Marshal writes it (compact UTF-8) at most 1 MiB.</summary>
    public const int MaxMetadataBytes = 1024 * 1024;

    public TaskJsonValidator()
    {
        // The original refuses only an empty name (FluentValidation's NotEmpty refuses whitespace too).
        RuleFor(t => t.Name).Must(name => !string.IsNullOrEmpty(name)).WithMessage("missing identity name");
        RuleFor(t => t.RunIf).Must(r => r is null or "" or "success" or "failure").WithMessage("run_if must be \"\", \"success\" or \"failure\"");
        RuleFor(t => t.Priority).InclusiveBetween(0, 100).WithMessage("priority must be between 0 and 100");
        // Ours (docs/compatibility.md): the task view's proplet column is indexed (PropletIds).
        RuleFor(t => t.PropletId).Must(p => p is null || Contracts.Proplets.PropletIds.Problem(p) is null).WithMessage($"proplet_id is longer than {Contracts.Proplets.PropletIds.MaxBytes} bytes (UTF-8)");
        RuleFor(t => t).Must(t => !(t.Broadcast && !string.IsNullOrEmpty(t.PropletId))).WithMessage("broadcast and proplet_id are mutually exclusive");
        RuleFor(t => t).Must(t => t.DependsOn is not { Count: > 0 } || !string.IsNullOrEmpty(t.WorkflowId))
            .WithMessage("workflow_id is required when depends_on is specified");
        RuleFor(t => t.File).Must(f => f is null || Base64Text.TryCanonical(f, out _)).WithMessage("file is not valid base64");
        RuleFor(t => t.Schedule).Must(s => string.IsNullOrEmpty(s) || CronSchedule.IsValid(s)).WithMessage(CronSchedule.Invalid);
        RuleFor(t => t.Timezone).Must(IsKnownTimezone).WithMessage(t => InvalidTimezone(t.Timezone));

        // The JSON fields' checks read their strings, which a lone surrogate makes unreadable: they run on storable JSON only.
        RuleFor(t => t).Must(t => StorableTaskJson.Problem(t) is null).WithMessage(t => StorableTaskJson.Problem(t)).DependentRules(() =>
        {
            RuleFor(t => t.Metadata).Must(m => m is null || m.Value.ValueKind is JsonValueKind.Object or JsonValueKind.Null).WithMessage("metadata must be a JSON object");
            RuleFor(t => t.Metadata).Must(m => m is null || JsonSize.CompactUtf8Bytes(m.Value) <= MaxMetadataBytes).WithMessage("metadata is larger than 1 MiB");
            RuleFor(t => t.MonitoringProfile).Custom((profile, context) =>
            {
                if (profile is { ValueKind: not JsonValueKind.Null } value && !MonitoringProfileJson.TryNormalize(value, out _, out var error))
                {
                    context.AddFailure("monitoring_profile", error!);
                }
            });
        });
    }

    /// <summary>
    /// A task's <c>timezone</c> must be one this host knows (IANA or Windows), or empty for UTC. The original takes any
    /// and computes in UTC when it cannot load it (spec §2.1); a zone that silently means UTC is refused instead
    /// (docs/compatibility.md).
    /// </summary>
    public static bool IsKnownTimezone(string? timezone) => string.IsNullOrEmpty(timezone) || TimeZoneInfo.TryFindSystemTimeZoneById(timezone, out _);

    public static string InvalidTimezone(string? timezone) => $"invalid timezone: {timezone}";
}

/// <summary>
/// A PUT's body (spec §2.6): the fields an update applies must have the shapes a create's must (a file in base64,
/// metadata an object of at most 1 MiB, a priority in 0–100, 0 keeping the stored one); the fields it ignores are not
/// checked. The original checks only the JSON's types on a PUT (a non-object metadata, bad base64: 400) and takes any
/// priority (docs/compatibility.md).
/// </summary>
internal sealed class TaskUpdateValidator : AbstractValidator<TaskJson>
{
    public static TaskUpdateValidator Instance { get; } = new();

    public TaskUpdateValidator()
    {
        RuleFor(t => t.Priority).InclusiveBetween(0, 100).WithMessage("priority must be between 0 and 100");
        RuleFor(t => t.File).Must(f => f is null || Base64Text.TryCanonical(f, out _)).WithMessage("file is not valid base64");
        // The original answers a PUT's bad cron with a 500 (spec §1.3); "" clears the schedule.
        RuleFor(t => t.Schedule).Must(s => string.IsNullOrEmpty(s) || CronSchedule.IsValid(s)).WithMessage(CronSchedule.Invalid);
        // The timezone is applied only with a new schedule, so only then checked (a stored task's old zone sent back
        // with another change is ignored, as the original ignores it).
        RuleFor(t => t.Timezone).Must(TaskJsonValidator.IsKnownTimezone).When(t => !string.IsNullOrEmpty(t.Schedule))
            .WithMessage(t => TaskJsonValidator.InvalidTimezone(t.Timezone));
        // As for a create: the JSON fields' checks run on storable JSON only.
        RuleFor(t => t).Must(t => StorableTaskJson.Problem(t) is null).WithMessage(t => StorableTaskJson.Problem(t)).DependentRules(() =>
        {
            RuleFor(t => t.Metadata).Must(m => m is null || m.Value.ValueKind is JsonValueKind.Object or JsonValueKind.Null).WithMessage("metadata must be a JSON object");
            RuleFor(t => t.Metadata).Must(m => m is null || JsonSize.CompactUtf8Bytes(m.Value) <= TaskJsonValidator.MaxMetadataBytes).WithMessage("metadata is larger than 1 MiB");
        });
    }
}
