namespace Propeller.Wasm;

/// <summary>The type of a table: its element reference type and limits.</summary>
public readonly record struct TableType(ValueKind ElementKind, Limits Limits);
