using Propeller.Wasm.Binary;
using Propeller.Wasm.Runtime;

namespace Propeller.Wasm;

/// <summary>
/// An instantiated module. The internal arrays are read directly by generated code (see FunctionCompiler), which is why
/// they are fields: Functions, Memories, Tables and Globals hold imports first, then definitions.
/// </summary>
public sealed class Instance
{
    internal readonly Function[] Functions;
    internal readonly Memory[] Memories;
    internal readonly Table[] Tables;
    internal readonly Global[] Globals;
    internal readonly byte[][] DataSegments;
    internal readonly object?[][] ElementSegments;
    internal readonly ExecutionState State;
    private readonly Dictionary<string, object> _exports = new(StringComparer.Ordinal);

    /// <summary>Instantiates with imports given in the module's import order.</summary>
    public Instance(Store store, Module module, params object[] imports)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(imports);
        Store = store;
        Module = module;
        State = store.State;
        var info = module.Info;
        if (imports.Length != info.Imports.Count)
        {
            throw new LinkException($"module {module.Name} needs {info.Imports.Count} imports, got {imports.Length}");
        }

        Functions = new Function[info.FunctionTypes.Count];
        Memories = new Memory[info.Memories.Count];
        Tables = new Table[info.Tables.Count];
        Globals = new Global[info.Globals.Count];
        int f = 0, m = 0, t = 0, g = 0;
        for (var i = 0; i < imports.Length; i++)
        {
            var import = info.Imports[i];
            var provided = imports[i];

            // Compiled code of a function runs against its own store's depth counter and stack floor, which are only
            // meaningful on that store's guest thread, so functions never cross stores.
            if (provided is Function { Owner: { } owner } && owner.Store != store)
            {
                throw new LinkException($"{import.Module}.{import.Name} is a function of another store");
            }

            switch (import.Kind)
            {
                case ExternKind.Function when provided is Function fn && fn.Type.Equals(info.Types[import.TypeIndex]):
                    Functions[f++] = fn;
                    break;
                case ExternKind.Memory when provided is Memory mem && mem.Limits.Satisfies(import.Memory):
                    Memories[m++] = mem;
                    break;
                case ExternKind.Table when provided is Table table && table.ElementKind == import.Table.ElementKind
                                                                  && table.Type.Limits.Satisfies(import.Table.Limits):
                    Tables[t++] = table;
                    break;
                case ExternKind.Global when provided is Global global && global.Type == import.Global:
                    Globals[g++] = global;
                    break;
                default:
                    throw new LinkException($"incompatible import type for {import.Module}.{import.Name}");
            }
        }

        var pointers = module.Compiled.FunctionPointers;
        for (var i = f; i < Functions.Length; i++)
        {
            Functions[i] = new Function(this, info.FunctionType(i), pointers[i - f], info.FunctionDisplayName(i));
        }

        for (var i = 0; i < info.DefinedGlobals.Count; i++)
        {
            var def = info.DefinedGlobals[i];
            var global = new Global(def.Type);
            global.Assign(Evaluate(def.Init, def.Type.Kind));
            Globals[g + i] = global;
        }

        for (; t < Tables.Length; t++)
        {
            Tables[t] = new Table(info.Tables[t], null, store.Limits);
        }

        var cap = store.Engine.Config.MaxMemoryPages;
        for (; m < Memories.Length; m++)
        {
            Memories[m] = new Memory(info.Memories[m].Minimum, info.Memories[m].Maximum, cap, store.Limits);
        }

        foreach (var export in info.Exports)
        {
            _exports[export.Name] = export.Kind switch
            {
                ExternKind.Function => Functions[export.Index],
                ExternKind.Table => Tables[export.Index],
                ExternKind.Memory => Memories[export.Index],
                _ => Globals[export.Index],
            };
        }

        ElementSegments = new object?[info.Elements.Count][];
        for (var i = 0; i < info.Elements.Count; i++)
        {
            var segment = info.Elements[i];
            var items = new object?[segment.Items.Length];
            for (var j = 0; j < items.Length; j++)
            {
                items[j] = Evaluate(segment.Items[j], segment.Kind).Reference;
            }

            ElementSegments[i] = items;
        }

        DataSegments = new byte[info.Data.Count][];
        for (var i = 0; i < info.Data.Count; i++)
        {
            DataSegments[i] = info.Data[i].Bytes;
        }

        Initialize(info);
    }

    public Store Store { get; }

    public Module Module { get; }

    /// <summary>Every export by name: <see cref="Function"/>, <see cref="Memory"/>, <see cref="Table"/> or <see cref="Global"/>.</summary>
    public IReadOnlyDictionary<string, object> Exports => _exports;

    public Function? GetFunction(string name) => _exports.GetValueOrDefault(name) as Function;

    public Memory? GetMemory(string name) => _exports.GetValueOrDefault(name) as Memory;

    public Table? GetTable(string name) => _exports.GetValueOrDefault(name) as Table;

    public Global? GetGlobal(string name) => _exports.GetValueOrDefault(name) as Global;

    /// <summary>A typed view of an exported function taking no arguments and returning nothing.</summary>
    public Action? GetAction(string name) => GetFunction(name) is { } f ? () => f.Call() : null;

    /// <summary>A typed view of an exported function; argument and result types must match the wasm signature.</summary>
    public Func<TResult>? GetFunction<TResult>(string name) =>
        GetFunction(name) is { } f ? () => (TResult)f.Invoke()! : null;

    public Func<T, TResult>? GetFunction<T, TResult>(string name) =>
        GetFunction(name) is { } f ? a => (TResult)f.Invoke(a)! : null;

    public Func<T1, T2, TResult>? GetFunction<T1, T2, TResult>(string name) =>
        GetFunction(name) is { } f ? (a, b) => (TResult)f.Invoke(a, b)! : null;

    private void Initialize(ModuleInfo info)
    {
        // Wasm 2.0 order: active element segments, then active data segments, then the start function. Writes made
        // before an out-of-bounds segment stay visible (bulk-memory semantics), so segments are applied one by one.
        Store.Thread.Run(() =>
        {
            for (var i = 0; i < info.Elements.Count; i++)
            {
                var segment = info.Elements[i];
                if (segment.Mode == SegmentMode.Active)
                {
                    var offset = Evaluate(segment.Offset!, ValueKind.I32).AsI32;
                    TableOps.Init(offset, 0, segment.Items.Length, this, segment.TableIndex, i);
                }

                if (segment.Mode != SegmentMode.Passive)
                {
                    ElementSegments[i] = [];
                }
            }

            for (var i = 0; i < info.Data.Count; i++)
            {
                var segment = info.Data[i];
                if (segment.Mode == SegmentMode.Active)
                {
                    var offset = Evaluate(segment.Offset!, ValueKind.I32).AsI32;
                    MemoryOps.Init(offset, 0, segment.Bytes.Length, this, i);
                    DataSegments[i] = [];
                }
            }
        });

        if (info.StartFunction is { } start)
        {
            Functions[start].Call();
        }
    }

    private Value Evaluate(ConstExpr expr, ValueKind kind)
    {
        var result = Value.Default(kind);
        foreach (var instruction in expr.Instructions)
        {
            result = instruction.Opcode switch
            {
                0x41 => Value.I32((int)instruction.Immediate),
                0x42 => Value.I64(instruction.Immediate),
                0x43 => Value.F32Bits((int)instruction.Immediate),
                0x44 => Value.F64Bits(instruction.Immediate),
                0x23 => Globals[(int)instruction.Immediate].Value,
                0xD0 => Value.Default((ValueKind)instruction.Immediate),
                _ => Value.FuncRef(Functions[(int)instruction.Immediate]),
            };
        }

        return result;
    }
}
