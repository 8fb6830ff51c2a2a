namespace Propeller.Wasm.Binary;

internal sealed record ElementSegment(SegmentMode Mode, int TableIndex, ConstExpr? Offset, ValueKind Kind, ConstExpr[] Items, int Position);
