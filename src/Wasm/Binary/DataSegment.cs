namespace Propeller.Wasm.Binary;

internal sealed record DataSegment(SegmentMode Mode, int MemoryIndex, ConstExpr? Offset, byte[] Bytes, int Position);
