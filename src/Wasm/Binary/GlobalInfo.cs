namespace Propeller.Wasm.Binary;

internal sealed record GlobalInfo(GlobalType Type, ConstExpr Init);
