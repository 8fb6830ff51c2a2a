namespace Propeller.Wasm;

/// <summary>A WebAssembly value type, numbered by its binary encoding.</summary>
public enum ValueKind : byte
{
    I32 = 0x7F,
    I64 = 0x7E,
    F32 = 0x7D,
    F64 = 0x7C,
    V128 = 0x7B,
    FuncRef = 0x70,
    ExternRef = 0x6F,
}
