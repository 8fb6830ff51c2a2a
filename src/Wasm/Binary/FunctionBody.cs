namespace Propeller.Wasm.Binary;

/// <summary>A code-section entry: declared locals (after the parameters) and the byte range of its instructions.</summary>
internal sealed record FunctionBody(ValueKind[] Locals, int CodeStart, int CodeEnd);
