namespace Propeller.Wasm;

/// <summary>The untyped form of a host function: read <paramref name="arguments"/>, write every slot of <paramref name="results"/>.</summary>
public delegate void HostCallback(Caller caller, ReadOnlySpan<Value> arguments, Span<Value> results);
