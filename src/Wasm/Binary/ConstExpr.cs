namespace Propeller.Wasm.Binary;

/// <summary>A constant expression (global initialiser, segment offset or element item) as decoded instructions.</summary>
internal sealed record ConstExpr(ConstInstruction[] Instructions, int Offset);
