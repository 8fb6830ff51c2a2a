using System.Collections.Concurrent;

namespace Propeller.Wasm;

/// <summary>A function signature. Structurally equal types share one <see cref="Id"/> across the process.</summary>
public sealed class FuncType : IEquatable<FuncType>
{
    private static readonly ConcurrentDictionary<string, int> Ids = new(StringComparer.Ordinal);

    public FuncType(IReadOnlyList<ValueKind> parameters, IReadOnlyList<ValueKind> results)
    {
        Parameters = [.. parameters];
        Results = [.. results];
        Signature = string.Concat(Parameters.Select(Code)) + "->" + string.Concat(Results.Select(Code));
        Id = Ids.GetOrAdd(Signature, _ => Ids.Count);
    }

    public IReadOnlyList<ValueKind> Parameters { get; }

    public IReadOnlyList<ValueKind> Results { get; }

    /// <summary>Canonical process-wide id, compared by call_indirect.</summary>
    internal int Id { get; }

    internal string Signature { get; }

    public bool Equals(FuncType? other) => other is not null && other.Id == Id;

    public override bool Equals(object? obj) => obj is FuncType other && Equals(other);

    public override int GetHashCode() => Id;

    public override string ToString() =>
        $"({string.Join(", ", Parameters.Select(Name))}) -> ({string.Join(", ", Results.Select(Name))})";

    internal static string Name(ValueKind kind) => kind switch
    {
        ValueKind.I32 => "i32",
        ValueKind.I64 => "i64",
        ValueKind.F32 => "f32",
        ValueKind.F64 => "f64",
        ValueKind.V128 => "v128",
        ValueKind.FuncRef => "funcref",
        ValueKind.ExternRef => "externref",
        _ => "?",
    };

    private static char Code(ValueKind kind) => kind switch
    {
        ValueKind.I32 => 'i',
        ValueKind.I64 => 'l',
        ValueKind.F32 => 'f',
        ValueKind.F64 => 'd',
        ValueKind.V128 => 'v',
        ValueKind.FuncRef => 'r',
        ValueKind.ExternRef => 'x',
        _ => '?',
    };
}
