namespace Propeller.WasmHost.Components;

/// <summary>The kinds of component-model value types (WIT), in the C API's order (wasmtime/component/types/val.h).</summary>
public enum WitKind
{
    Bool,
    S8,
    S16,
    S32,
    S64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
    Char,
    String,
    List,
    Record,
    Tuple,
    Variant,
    Enum,
    Option,
    Result,
    Flags,
    Own,
    Borrow,
    Future,
    Stream,
    ErrorContext,
}

/// <summary>
/// A component value type, read from a compiled component through Wasmtime's type reflection (the .NET wrapper only
/// tells a function's parameter count, ADR 0011): <see cref="Element"/> for list and option, <see cref="Cases"/> for
/// record fields, tuple members (unnamed), variant cases (payload optional), enum and flags names (no payload), and
/// <see cref="Ok"/>/<see cref="Err"/> for result.
/// </summary>
public sealed record WitType(WitKind Kind)
{
    public WitType? Element { get; init; }

    public IReadOnlyList<WitCase> Cases { get; init; } = [];

    public WitType? Ok { get; init; }

    public WitType? Err { get; init; }

    public static WitType Of(WitKind kind) => new(kind);

    public override string ToString() => Kind switch
    {
        WitKind.List => $"list<{Element}>",
        WitKind.Option => $"option<{Element}>",
        WitKind.Result => $"result<{(Ok is null ? "_" : Ok.ToString())}, {(Err is null ? "_" : Err.ToString())}>",
        WitKind.Tuple => $"tuple<{string.Join(", ", Cases.Select(c => c.Type))}>",
        WitKind.Record => $"record {{{string.Join(", ", Cases.Select(c => $"{c.Name}: {c.Type}"))}}}",
        WitKind.Variant => $"variant {{{string.Join(", ", Cases.Select(c => c.Type is null ? c.Name : $"{c.Name}({c.Type})"))}}}",
        WitKind.Enum => $"enum {{{string.Join(", ", Cases.Select(c => c.Name))}}}",
        WitKind.Flags => $"flags {{{string.Join(", ", Cases.Select(c => c.Name))}}}",
        WitKind.ErrorContext => "error-context",
        _ => Kind.ToString().ToLowerInvariant(),
    };
}

/// <summary>A record field, tuple member (empty name), variant case, enum case or flag (no type).</summary>
public sealed record WitCase(string Name, WitType? Type);

/// <summary>An exported component function: its interface (null at the top level), name, parameters and result.</summary>
public sealed record WitFunction(string? Interface, string Name, IReadOnlyList<WitCase> Parameters, WitType? Result)
{
    public string FullName => Interface is null ? Name : $"{Interface}#{Name}";
}
