namespace Propeller.Application.Plugins;

/// <summary>The operation being authorized (spec §7.4 AuthContext.action).</summary>
public enum PluginAction
{
    None,
    Create,
    Start,
    Stop,
    Invoke,
    Delete,
    Update,
}

/// <summary>Who asks, and for what: the original's AuthContext. <see cref="UserId"/> comes from <c>X-User-Id</c>;
/// internal starts (cron, workflows) use <see cref="SystemUser"/>.</summary>
public sealed record PluginAuthContext(string? UserId, PluginAction Action)
{
    public const string SystemUser = "system";
}

/// <summary>
/// The task as plugins see it (spec §7.4 TaskInfo). <see cref="Id"/> is empty during create. Equal when every field is,
/// the lists item by item and the environment as a set of pairs: what a plugin decided on one is what it would decide
/// on the other (the gate's check that the task it authorized is the task the command decides on).
/// </summary>
public sealed record PluginTaskInfo
{
    public required string Id { get; init; }

    public required string Name { get; init; }

    public string? Kind { get; init; }

    public string? ImageUrl { get; init; }

    public IReadOnlyList<string> Inputs { get; init; } = [];

    public IReadOnlyList<string> CliArgs { get; init; } = [];

    public IReadOnlyDictionary<string, string> Env { get; init; } = new Dictionary<string, string>();

    public string? PropletId { get; init; }

    public int Priority { get; init; }

    public bool Daemon { get; init; }

    public bool Encrypted { get; init; }

    public DateTimeOffset? CreatedAt { get; init; }

    public bool Equals(PluginTaskInfo? other) =>
        other is not null
        && (ReferenceEquals(this, other)
            || (Id == other.Id && Name == other.Name && Kind == other.Kind && ImageUrl == other.ImageUrl && PropletId == other.PropletId
                && Priority == other.Priority && Daemon == other.Daemon && Encrypted == other.Encrypted && CreatedAt == other.CreatedAt
                && Inputs.SequenceEqual(other.Inputs, StringComparer.Ordinal) && CliArgs.SequenceEqual(other.CliArgs, StringComparer.Ordinal)
                && Env.Count == other.Env.Count && Env.All(kv => other.Env.TryGetValue(kv.Key, out var value) && value == kv.Value)));

    public override int GetHashCode() => HashCode.Combine(Id, Name, Kind, ImageUrl, PropletId, Priority, Inputs.Count, Env.Count);
}

/// <summary>The chosen proplet as <c>on_before_dispatch</c> sees it.</summary>
public sealed record PluginPropletInfo(string Id, string Name, IReadOnlyList<string> Tags, ulong TotalMemoryBytes, string? Location);

/// <summary>One plugin's answer to one hook call, for the audit trail (stored in event metadata).</summary>
/// <param name="Plugin">The plugin's name (file name without <c>.wasm</c>).</param>
/// <param name="Hook">The hook, as the export is named (<c>authorize</c>, <c>enrich_task</c>, ...).</param>
/// <param name="Allowed">The answer; notification and enrich hooks report true unless they failed.</param>
/// <param name="Reason">The deny reason or the failure (trap, timeout, malformed answer).</param>
/// <param name="Duration">How long the call took.</param>
public sealed record PluginDecision(string Plugin, string Hook, bool Allowed, string? Reason, TimeSpan Duration);

/// <summary>The outcome of a gating chain.</summary>
public sealed record GateOutcome(bool Allowed, string? Reason, IReadOnlyList<PluginDecision> Decisions)
{
    public static GateOutcome Allow { get; } = new(true, null, []);
}

/// <summary>The merged <c>enrich_task</c> answers (spec §7.6 merge rules). Null members mean "no change".</summary>
public sealed record EnrichOutcome(
    IReadOnlyDictionary<string, string>? Env,
    int? Priority,
    IReadOnlyList<string>? Inputs,
    string? ImageUrl,
    IReadOnlyList<PluginDecision> Decisions)
{
    public static EnrichOutcome None { get; } = new(null, null, null, null, []);
}

/// <summary>The merged <c>on_before_proplet_select</c> answers: tags are a union, memory the maximum.</summary>
public sealed record SelectOutcome(bool Allowed, string? Reason, IReadOnlyList<string> RequiredTags, ulong MinMemoryBytes, IReadOnlyList<PluginDecision> Decisions)
{
    public static SelectOutcome Allow { get; } = new(true, null, [], 0, []);
}

/// <summary>The merged <c>on_before_dispatch</c> answers: <see cref="ExtraEnv"/> merged in plugin order.</summary>
public sealed record DispatchOutcome(bool Allowed, string? Reason, IReadOnlyDictionary<string, string> ExtraEnv, IReadOnlyList<PluginDecision> Decisions)
{
    public static DispatchOutcome Allow { get; } = new(true, null, new Dictionary<string, string>(), []);
}
