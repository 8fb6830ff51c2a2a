namespace Propeller.Wasm.Binary;

internal sealed record ImportInfo(string Module, string Name, ExternKind Kind, int TypeIndex, TableType Table, Limits Memory, GlobalType Global, int Position);
