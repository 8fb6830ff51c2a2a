using Propeller.Wasm.Binary;

namespace Propeller.Wasm.Compilation;

/// <summary>The compiled code of a module, shared by all its instances: one static method per defined function.</summary>
internal sealed record CompiledModule(ModuleInfo Info, nint[] FunctionPointers, Type? Code, TimeSpan CompileTime);
