namespace Propeller.Wasm;

/// <summary>One import of a module. Exactly one of the type properties is set, according to <see cref="Kind"/>.</summary>
public sealed record ImportDescriptor(
    string ModuleName,
    string Name,
    ExternKind Kind,
    FuncType? FunctionType,
    TableType? TableType,
    Limits? MemoryLimits,
    GlobalType? GlobalType);
