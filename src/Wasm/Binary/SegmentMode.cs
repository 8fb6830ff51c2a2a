namespace Propeller.Wasm.Binary;

internal enum SegmentMode
{
    Active,
    Passive,
    Declarative,
}
