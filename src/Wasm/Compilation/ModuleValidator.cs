using Propeller.Wasm.Binary;

namespace Propeller.Wasm.Compilation;

/// <summary>Module-level validation (everything except function bodies, which FunctionCompiler validates).</summary>
internal static class ModuleValidator
{
    private const uint MaxPages = 65536;

    /// <summary>Validates and returns the functions that may be referenced by ref.func in bodies (the spec's C.refs).</summary>
    public static HashSet<int> Validate(ModuleInfo m)
    {
        foreach (var import in m.Imports)
        {
            switch (import.Kind)
            {
                case ExternKind.Function when import.TypeIndex >= m.Types.Count:
                    throw WasmReader.Invalid("unknown type", import.Position);
                case ExternKind.Memory:
                    CheckMemory(import.Memory, import.Position);
                    break;
                case ExternKind.Table:
                    CheckTable(import.Table.Limits, import.Position);
                    break;
            }
        }

        for (var i = m.ImportedFunctionCount; i < m.FunctionTypes.Count; i++)
        {
            if (m.FunctionTypes[i] >= m.Types.Count)
            {
                throw WasmReader.Invalid("unknown type", m.FunctionPositions[i - m.ImportedFunctionCount]);
            }
        }

        for (var i = m.ImportedTableCount; i < m.Tables.Count; i++)
        {
            CheckTable(m.Tables[i].Limits, m.TablePositions[i - m.ImportedTableCount]);
        }

        if (m.Memories.Count > 1)
        {
            throw WasmReader.Invalid("multiple memories", m.MemoryPositions.Count > 0 ? m.MemoryPositions[^1] : m.Imports[^1].Position);
        }

        for (var i = m.ImportedMemoryCount; i < m.Memories.Count; i++)
        {
            CheckMemory(m.Memories[i], m.MemoryPositions[i - m.ImportedMemoryCount]);
        }

        var refs = new HashSet<int>();
        foreach (var export in m.Exports)
        {
            if (export.Kind == ExternKind.Function)
            {
                refs.Add(export.Index);
            }
        }

        foreach (var segment in m.Elements)
        {
            foreach (var item in segment.Items)
            {
                CollectRefs(item, refs);
            }
        }

        foreach (var global in m.DefinedGlobals)
        {
            CollectRefs(global.Init, refs);
        }

        for (var i = 0; i < m.DefinedGlobals.Count; i++)
        {
            var global = m.DefinedGlobals[i];
            CheckConst(m, global.Init, global.Type.Kind, m.ImportedGlobalCount);
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var e = 0; e < m.Exports.Count; e++)
        {
            var export = m.Exports[e];
            var at = m.ExportPositions[e];
            if (!names.Add(export.Name))
            {
                throw WasmReader.Invalid("duplicate export name", at);
            }

            var (count, what) = export.Kind switch
            {
                ExternKind.Function => (m.FunctionTypes.Count, "function"),
                ExternKind.Table => (m.Tables.Count, "table"),
                ExternKind.Memory => (m.Memories.Count, "memory"),
                _ => (m.Globals.Count, "global"),
            };
            if (export.Index >= count)
            {
                throw WasmReader.Invalid($"unknown {what} {export.Index}", at);
            }
        }

        if (m.StartFunction is { } start)
        {
            if (start >= m.FunctionTypes.Count || start < 0)
            {
                throw WasmReader.Invalid("unknown function", m.StartPosition);
            }

            var type = m.FunctionType(start);
            if (type.Parameters.Count != 0 || type.Results.Count != 0)
            {
                throw WasmReader.Invalid("start function", m.StartPosition);
            }
        }

        foreach (var segment in m.Elements)
        {
            if (segment.Mode == SegmentMode.Active)
            {
                if (segment.TableIndex >= m.Tables.Count)
                {
                    throw WasmReader.Invalid($"unknown table {segment.TableIndex}", segment.Position);
                }

                CheckConst(m, segment.Offset!, ValueKind.I32, m.ImportedGlobalCount);
                if (m.Tables[segment.TableIndex].ElementKind != segment.Kind)
                {
                    throw WasmReader.Invalid("type mismatch", segment.Position);
                }
            }

            foreach (var item in segment.Items)
            {
                CheckConst(m, item, segment.Kind, m.ImportedGlobalCount);
            }
        }

        foreach (var segment in m.Data)
        {
            if (segment.Mode == SegmentMode.Active)
            {
                if (segment.MemoryIndex >= m.Memories.Count)
                {
                    throw WasmReader.Invalid($"unknown memory {segment.MemoryIndex}", segment.Position);
                }

                CheckConst(m, segment.Offset!, ValueKind.I32, m.ImportedGlobalCount);
            }
        }

        return refs;
    }

    private static void CollectRefs(ConstExpr expr, HashSet<int> refs)
    {
        foreach (var instruction in expr.Instructions)
        {
            if (instruction.Opcode == 0xD2)
            {
                refs.Add((int)Math.Min(instruction.Immediate, int.MaxValue));
            }
        }
    }

    private static void CheckMemory(Limits limits, int at)
    {
        if (limits.Minimum > MaxPages || limits.Maximum > MaxPages)
        {
            throw WasmReader.Invalid("memory size must be at most 65536 pages (4GiB)", at);
        }

        if (limits.Maximum is { } max && max < limits.Minimum)
        {
            throw WasmReader.Invalid("size minimum must not be greater than maximum", at);
        }
    }

    private static void CheckTable(Limits limits, int at)
    {
        if (limits.Maximum is { } max && max < limits.Minimum)
        {
            throw WasmReader.Invalid("size minimum must not be greater than maximum", at);
        }
    }

    private static void CheckConst(ModuleInfo m, ConstExpr expr, ValueKind expected, int visibleGlobals)
    {
        var stack = new List<ValueKind>();
        foreach (var instruction in expr.Instructions)
        {
            switch (instruction.Opcode)
            {
                case 0x41:
                    stack.Add(ValueKind.I32);
                    break;
                case 0x42:
                    stack.Add(ValueKind.I64);
                    break;
                case 0x43:
                    stack.Add(ValueKind.F32);
                    break;
                case 0x44:
                    stack.Add(ValueKind.F64);
                    break;
                case 0x23:
                    if (instruction.Immediate >= visibleGlobals)
                    {
                        throw WasmReader.Invalid($"unknown global {instruction.Immediate}", instruction.Offset);
                    }

                    var global = m.Globals[(int)instruction.Immediate];
                    if (global.Mutable)
                    {
                        throw WasmReader.Invalid("constant expression required", instruction.Offset);
                    }

                    stack.Add(global.Kind);
                    break;
                case 0xD0:
                    stack.Add((ValueKind)instruction.Immediate);
                    break;
                default:
                    if (instruction.Immediate >= m.FunctionTypes.Count)
                    {
                        throw WasmReader.Invalid($"unknown function {instruction.Immediate}", instruction.Offset);
                    }

                    stack.Add(ValueKind.FuncRef);
                    break;
            }
        }

        if (stack.Count != 1 || stack[0] != expected)
        {
            throw WasmReader.Invalid("type mismatch", expr.Offset);
        }
    }
}
