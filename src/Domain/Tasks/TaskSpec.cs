using Propeller.Domain.Common;

namespace Propeller.Domain.Tasks;

/// <summary>
/// What a client may set on a task (spec §2.1, the whitelisted fields; state, results and timestamps are not
/// client-settable, which fixes the "create accepts every field" quirk).
/// </summary>
/// <param name="File">The wasm binary as base64, as on the wire.</param>
/// <param name="Metadata">Free-form JSON object, kept as its text; never sent to proplets.</param>
public sealed record TaskSpec(
    string Name,
    string Kind,
    string? ImageUrl,
    string? File,
    EquatableArray<string> CliArgs,
    EquatableArray<string> Inputs,
    EquatableMap Env,
    bool Daemon,
    int Priority,
    string? PropletId,
    string? Metadata)
{
    public const string StandardKind = "standard";

    public const int DefaultPriority = 50;

    public static TaskSpec Named(string name) =>
        new(name, StandardKind, null, null, EquatableArray<string>.Empty, EquatableArray<string>.Empty, EquatableMap.Empty, false, DefaultPriority, null, null);
}
