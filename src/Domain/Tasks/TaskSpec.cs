using Propeller.Domain.Common;

namespace Propeller.Domain.Tasks;

/// <summary>
/// What a client may set on a task (spec propeller-manager.md §2.1, the whitelisted fields). State, results, errors
/// and timestamps are not client-settable, which fixes the original's "create accepts every field" quirk. Opaque
/// JSON values (metadata, monitoring profile) are kept as their text.
/// </summary>
public sealed record TaskSpec
{
    public const string StandardKind = "standard";

    public const int DefaultPriority = 50;

    /// <summary>The proplet a broadcast task is dispatched to: none in particular.</summary>
    public const string BroadcastTarget = "broadcast";

    public required string Name { get; init; }

    public string Kind { get; init; } = StandardKind;

    public string? ImageUrl { get; init; }

    /// <summary>The wasm binary as base64, as on the wire.</summary>
    public string? File { get; init; }

    /// <summary>Null when the client did not set it (the original serialises it as <c>null</c>).</summary>
    public EquatableArray<string>? CliArgs { get; init; }

    public EquatableArray<string> Inputs { get; init; } = EquatableArray<string>.Empty;

    public EquatableMap Env { get; init; } = EquatableMap.Empty;

    public bool Daemon { get; init; }

    public bool Latent { get; init; }

    public bool Encrypted { get; init; }

    public string? KbsResourcePath { get; init; }

    /// <summary>A proplet the task is pinned to.</summary>
    public string? PropletId { get; init; }

    public EquatableArray<string> DependsOn { get; init; } = EquatableArray<string>.Empty;

    /// <summary>"", "success" or "failure".</summary>
    public string? RunIf { get; init; }

    public string? WorkflowId { get; init; }

    public string? JobId { get; init; }

    /// <summary>The monitoring profile object as JSON text, passed through.</summary>
    public string? MonitoringProfile { get; init; }

    public string? Mode { get; init; }

    public string? Schedule { get; init; }

    public bool IsRecurring { get; init; }

    public string? Timezone { get; init; }

    /// <summary>Dispatched to every proplet at once (spec §2.4): its dispatch names <see cref="BroadcastTarget"/>, and
    /// the first result from any proplet ends the attempt.</summary>
    public bool Broadcast { get; init; }

    public int Priority { get; init; } = DefaultPriority;

    /// <summary>Free-form JSON object as text; filterable, never sent to proplets.</summary>
    public string? Metadata { get; init; }

    /// <summary>Null when absent; "" is kept (the original distinguishes them).</summary>
    public string? HalStoragePath { get; init; }

    public static TaskSpec Named(string name) => new() { Name = name };
}
