using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Changes;

/// <summary>A stream reached <paramref name="Version"/>; <paramref name="State"/> is its committed state when known.</summary>
public sealed record ChangeNotice(string StreamId, long Version, object? State)
{
    /// <summary>What a notice holds besides its state's variable parts: the records, their fixed fields, the ids.</summary>
    public const long Overhead = 1024;

    /// <summary>What one more string of a list or map holds besides its characters (its object, its slot), in characters.</summary>
    private const long PerItem = 16;

    /// <summary>
    /// About how many bytes holding this notice keeps alive (<see cref="Estimate"/>), counted once for all its readers:
    /// what a reader's buffer is bounded by besides the count (<see cref="ChangeSubscription"/>).
    /// </summary>
    public long Bytes { get; } = Estimate(State);

    /// <summary>
    /// An estimate of what <paramref name="state"/> holds, from the lengths of its strings that can be large (a task's
    /// metadata, up to 1 MiB by the spec, its results, inputs, env; a proplet's metadata) at two bytes a character:
    /// it runs on every commit that has readers, so it adds lengths and serializes nothing.
    /// </summary>
    internal static long Estimate(object? state)
    {
        long chars = 0;
        switch (state)
        {
            case TaskState task:
                chars += Length(task.Results) + Length(task.Error) + Length(task.WaitReason) + Length(task.PropletId) + Length(task.RequestedBy);
                if (task.Spec is { } spec)
                {
                    // A large module is a reference by now (ADR 0018): File is at most ModuleReference.InlineLimit.
                    chars += Length(spec.Name) + Length(spec.ImageUrl) + Length(spec.File) + Length(spec.Metadata) + Length(spec.MonitoringProfile)
                        + Length(spec.KbsResourcePath) + Length(spec.Schedule) + Length(spec.HalStoragePath) + Length(spec.PropletId)
                        + Length(spec.WorkflowId) + Length(spec.JobId) + Length(spec.Timezone) + Length(spec.Mode) + Length(spec.RunIf);
                    chars += Length(spec.Inputs) + Length(spec.DependsOn) + (spec.CliArgs is { } args ? Length(args) : 0);
                    foreach (var (key, value) in spec.Env)
                    {
                        chars += key.Length + value.Length + (2 * PerItem);
                    }
                }

                break;
            case PropletState proplet:
                var metadata = proplet.Metadata;
                chars += Length(proplet.Name) + Length(metadata.Description) + Length(metadata.Location) + Length(metadata.Ip) + Length(metadata.Environment)
                    + Length(metadata.Os) + Length(metadata.Hostname) + Length(metadata.CpuArch) + Length(metadata.PropletVersion) + Length(metadata.WasmRuntime)
                    + Length(metadata.Tags);
                break;
        }

        return Overhead + (2 * chars);
    }

    private static long Length(string? text) => text?.Length ?? 0;

    private static long Length(Domain.Common.EquatableArray<string> items)
    {
        long chars = 0;
        for (var i = 0; i < items.Count; i++)
        {
            chars += items[i].Length + PerItem;
        }

        return chars;
    }
}
