namespace Propeller.Wasm;

/// <summary>The kind of an import or export.</summary>
public enum ExternKind : byte
{
    Function = 0,
    Table = 1,
    Memory = 2,
    Global = 3,
}
