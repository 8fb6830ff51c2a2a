namespace Propeller.Wasm;

/// <summary>Why guest code trapped. Numbered like wasmtime-dotnet's TrapCode.</summary>
public enum TrapCode
{
    Undefined = -1,
    StackOverflow = 0,
    MemoryOutOfBounds = 1,
    HeapMisaligned = 2,
    TableOutOfBounds = 3,
    IndirectCallToNull = 4,
    BadSignature = 5,
    IntegerOverflow = 6,
    IntegerDivisionByZero = 7,
    BadConversionToInteger = 8,
    Unreachable = 9,
    Interrupt = 10,
    OutOfFuel = 12,
    NullReference = 13,
    ResourceLimitExceeded = 14,
}
