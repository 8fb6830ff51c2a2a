namespace Propeller.Wasm;

/// <summary>One export of a module: its name, kind and index in that kind's index space.</summary>
public sealed record ExportDescriptor(string Name, ExternKind Kind, int Index);
