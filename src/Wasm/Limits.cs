namespace Propeller.Wasm;

/// <summary>Size limits of a memory (in 64 KiB pages) or a table (in elements).</summary>
public readonly record struct Limits(uint Minimum, uint? Maximum)
{
    /// <summary>Import matching: this (the provided object) is a subtype of <paramref name="required"/>.</summary>
    public bool Satisfies(Limits required) =>
        Minimum >= required.Minimum
        && (required.Maximum is not { } max || (Maximum is { } own && own <= max));
}
