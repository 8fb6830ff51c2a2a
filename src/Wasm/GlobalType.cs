namespace Propeller.Wasm;

/// <summary>The type of a global: value type and mutability.</summary>
public readonly record struct GlobalType(ValueKind Kind, bool Mutable);
