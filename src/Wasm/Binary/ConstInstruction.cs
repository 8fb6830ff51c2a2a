namespace Propeller.Wasm.Binary;

/// <summary>One instruction of a constant expression: opcode plus its immediate (value bits, index or ref type).</summary>
internal readonly record struct ConstInstruction(byte Opcode, long Immediate, int Offset);
