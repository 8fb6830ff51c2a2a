namespace Propeller.Wasm.Binary;

/// <summary>The decoded contents of a module. Index spaces (functions, tables, memories, globals) start with the imports.</summary>
internal sealed class ModuleInfo
{
    public required byte[] Bytes { get; init; }

    public List<FuncType> Types { get; } = [];

    public List<ImportInfo> Imports { get; } = [];

    /// <summary>Type index of every function, imported ones first.</summary>
    public List<int> FunctionTypes { get; } = [];

    public List<TableType> Tables { get; } = [];

    public List<Limits> Memories { get; } = [];

    public List<GlobalType> Globals { get; } = [];

    public List<GlobalInfo> DefinedGlobals { get; } = [];

    public List<ExportDescriptor> Exports { get; } = [];

    public int? StartFunction { get; set; }

    public List<ElementSegment> Elements { get; } = [];

    public List<DataSegment> Data { get; } = [];

    public int? DataCount { get; set; }

    public List<FunctionBody> Bodies { get; } = [];

    public Dictionary<int, string> FunctionNames { get; } = [];

    public string? ModuleName { get; set; }

    public List<(string Name, int Offset, int Length)> CustomSections { get; } = [];

    /// <summary>Byte offsets of entries, for error messages: function-section entries (defined functions), exports,
    /// defined tables and memories, and the start section.</summary>
    public List<int> FunctionPositions { get; } = [];

    public List<int> ExportPositions { get; } = [];

    public List<int> TablePositions { get; } = [];

    public List<int> MemoryPositions { get; } = [];

    public int StartPosition { get; set; }

    public int ImportedFunctionCount { get; set; }

    public int ImportedTableCount { get; set; }

    public int ImportedMemoryCount { get; set; }

    public int ImportedGlobalCount { get; set; }

    public FuncType FunctionType(int functionIndex) => Types[FunctionTypes[functionIndex]];

    public string FunctionDisplayName(int functionIndex) =>
        FunctionNames.TryGetValue(functionIndex, out var name) ? name : $"func{functionIndex}";
}
