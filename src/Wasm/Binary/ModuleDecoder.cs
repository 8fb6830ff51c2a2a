namespace Propeller.Wasm.Binary;

/// <summary>
/// Decodes the binary format into <see cref="ModuleInfo"/>. Structural (malformed) errors are reported here with their byte
/// offset; type rules are left to the validator. Every count is checked against the bytes left before anything is allocated.
/// </summary>
internal static class ModuleDecoder
{
    /// <summary>Implementation limit on locals per function, so a module cannot make the compiler allocate without bound.</summary>
    public const int MaxLocals = 50_000;

    public static ModuleInfo Decode(byte[] bytes)
    {
        var r = new WasmReader(bytes);
        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != 0x61 || bytes[2] != 0x73 || bytes[3] != 0x6D)
        {
            throw WasmReader.Malformed(bytes.Length < 4 ? "unexpected end" : "magic header not detected", 0);
        }

        if (bytes.Length < 8)
        {
            throw WasmReader.Malformed("unexpected end", 4);
        }

        if (bytes[4] != 1 || bytes[5] != 0 || bytes[6] != 0 || bytes[7] != 0)
        {
            throw WasmReader.Malformed("unknown binary version", 4);
        }

        r.Position = 8;
        var m = new ModuleInfo { Bytes = bytes };
        var lastOrder = 0;
        var functionCount = -1;
        while (!r.AtEnd)
        {
            var idStart = r.Position;
            var id = r.ReadByte();
            var size = r.ReadU32();
            if (size > r.Remaining)
            {
                throw WasmReader.Malformed("length out of bounds", r.Position);
            }

            var start = r.Position;
            var end = start + (int)size;
            var s = new WasmReader(bytes, start, end);
            if (id != 0)
            {
                var order = Order(id, idStart);
                if (order <= lastOrder)
                {
                    throw WasmReader.Malformed("unexpected content after last section", idStart);
                }

                lastOrder = order;
            }

            switch (id)
            {
                case 0:
                    ReadCustom(m, s);
                    break;
                case 1:
                    ReadTypes(m, s);
                    break;
                case 2:
                    ReadImports(m, s);
                    break;
                case 3:
                    functionCount = ReadFunctions(m, s);
                    break;
                case 4:
                    ReadTables(m, s);
                    break;
                case 5:
                    ReadMemories(m, s);
                    break;
                case 6:
                    ReadGlobals(m, s);
                    break;
                case 7:
                    ReadExports(m, s);
                    break;
                case 8:
                    m.StartPosition = s.Position;
                    m.StartFunction = (int)Math.Min(s.ReadU32(), int.MaxValue);
                    break;
                case 9:
                    ReadElements(m, s);
                    break;
                case 10:
                    ReadCode(m, s, functionCount < 0 ? 0 : functionCount);
                    break;
                case 11:
                    ReadData(m, s);
                    break;
                case 12:
                    m.DataCount = (int)Math.Min(s.ReadU32(), int.MaxValue);
                    break;
                default:
                    throw WasmReader.Malformed("malformed section id", idStart);
            }

            if (s.Position != end)
            {
                throw WasmReader.Malformed("section size mismatch", s.Position);
            }

            r.Position = end;
        }

        if (functionCount > 0 && m.Bodies.Count == 0)
        {
            throw WasmReader.Malformed("function and code section have inconsistent lengths", bytes.Length);
        }

        if (m.DataCount is { } dc && dc != m.Data.Count)
        {
            throw WasmReader.Malformed("data count and data section have inconsistent lengths", bytes.Length);
        }

        return m;
    }

    private static int Order(byte id, int offset) => id switch
    {
        >= 1 and <= 9 => id,
        12 => 10,
        10 => 11,
        11 => 12,
        _ => throw WasmReader.Malformed("malformed section id", offset),
    };

    private static void ReadCustom(ModuleInfo m, WasmReader s)
    {
        var name = s.ReadName();
        m.CustomSections.Add((name, s.Position, s.Remaining));
        if (name == "name")
        {
            // The name section only feeds diagnostics, so a damaged one is ignored rather than rejecting the module.
            try
            {
                ReadNames(m, new WasmReader(s.Bytes, s.Position, s.End));
            }
            catch (ModuleException)
            {
                m.FunctionNames.Clear();
            }
        }

        s.Position = s.End;
    }

    private static void ReadNames(ModuleInfo m, WasmReader s)
    {
        while (!s.AtEnd)
        {
            var id = s.ReadByte();
            var size = s.ReadU32();
            if (size > s.Remaining)
            {
                return;
            }

            var end = s.Position + (int)size;
            var sub = new WasmReader(s.Bytes, s.Position, end);
            if (id == 0)
            {
                m.ModuleName = sub.ReadName();
            }
            else if (id == 1)
            {
                var count = sub.ReadCount();
                for (var i = 0; i < count; i++)
                {
                    var index = (int)sub.ReadU32();
                    m.FunctionNames[index] = sub.ReadName();
                }
            }

            s.Position = end;
        }
    }

    private static void ReadTypes(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            var at = s.Position;
            if (s.ReadByte() != 0x60)
            {
                throw WasmReader.Malformed("integer representation too long", at);
            }

            var pc = s.ReadCount();
            var ps = new ValueKind[pc];
            for (var j = 0; j < pc; j++)
            {
                ps[j] = s.ReadValueKind();
            }

            var rc = s.ReadCount();
            var rs = new ValueKind[rc];
            for (var j = 0; j < rc; j++)
            {
                rs[j] = s.ReadValueKind();
            }

            m.Types.Add(new FuncType(ps, rs));
        }
    }

    private static void ReadImports(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            var at = s.Position;
            var module = s.ReadName();
            var name = s.ReadName();
            var kindAt = s.Position;
            var kind = s.ReadByte();
            switch (kind)
            {
                case 0:
                    var typeIndex = (int)Math.Min(s.ReadU32(), int.MaxValue);
                    m.Imports.Add(new ImportInfo(module, name, ExternKind.Function, typeIndex, default, default, default, at));
                    m.FunctionTypes.Add(typeIndex);
                    m.ImportedFunctionCount++;
                    break;
                case 1:
                    var table = new TableType(s.ReadRefKind(), s.ReadLimits());
                    m.Imports.Add(new ImportInfo(module, name, ExternKind.Table, 0, table, default, default, at));
                    m.Tables.Add(table);
                    m.ImportedTableCount++;
                    break;
                case 2:
                    var memory = s.ReadLimits();
                    m.Imports.Add(new ImportInfo(module, name, ExternKind.Memory, 0, default, memory, default, at));
                    m.Memories.Add(memory);
                    m.ImportedMemoryCount++;
                    break;
                case 3:
                    var global = ReadGlobalType(s);
                    m.Imports.Add(new ImportInfo(module, name, ExternKind.Global, 0, default, default, global, at));
                    m.Globals.Add(global);
                    m.ImportedGlobalCount++;
                    break;
                default:
                    throw WasmReader.Malformed("malformed import kind", kindAt);
            }
        }
    }

    private static GlobalType ReadGlobalType(WasmReader s)
    {
        var kind = s.ReadValueKind();
        var at = s.Position;
        var mut = s.ReadByte();
        if (mut > 1)
        {
            throw WasmReader.Malformed("malformed mutability", at);
        }

        return new GlobalType(kind, mut == 1);
    }

    private static int ReadFunctions(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            m.FunctionPositions.Add(s.Position);
            m.FunctionTypes.Add((int)Math.Min(s.ReadU32(), int.MaxValue));
        }

        return count;
    }

    private static void ReadTables(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            m.TablePositions.Add(s.Position);
            m.Tables.Add(new TableType(s.ReadRefKind(), s.ReadLimits()));
        }
    }

    private static void ReadMemories(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            m.MemoryPositions.Add(s.Position);
            m.Memories.Add(s.ReadLimits());
        }
    }

    private static void ReadGlobals(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            var type = ReadGlobalType(s);
            m.Globals.Add(type);
            m.DefinedGlobals.Add(new GlobalInfo(type, ReadConstExpr(s)));
        }
    }

    private static void ReadExports(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            m.ExportPositions.Add(s.Position);
            var name = s.ReadName();
            var at = s.Position;
            var kind = s.ReadByte();
            if (kind > 3)
            {
                throw WasmReader.Malformed("malformed export kind", at);
            }

            m.Exports.Add(new ExportDescriptor(name, (ExternKind)kind, (int)Math.Min(s.ReadU32(), int.MaxValue)));
        }
    }

    public static ConstExpr ReadConstExpr(WasmReader s)
    {
        var start = s.Position;
        var list = new List<ConstInstruction>(1);
        while (true)
        {
            var at = s.Position;
            var op = s.ReadByte();
            switch (op)
            {
                case 0x0B:
                    return new ConstExpr([.. list], start);
                case 0x41:
                    list.Add(new ConstInstruction(op, s.ReadS32(), at));
                    break;
                case 0x42:
                    list.Add(new ConstInstruction(op, s.ReadS64(), at));
                    break;
                case 0x43:
                    list.Add(new ConstInstruction(op, s.ReadF32Bits(), at));
                    break;
                case 0x44:
                    list.Add(new ConstInstruction(op, s.ReadF64Bits(), at));
                    break;
                case 0x23:
                case 0xD2:
                    list.Add(new ConstInstruction(op, s.ReadU32(), at));
                    break;
                case 0xD0:
                    list.Add(new ConstInstruction(op, (long)s.ReadRefKind(), at));
                    break;
                default:
                    // Any other instruction is a validation error in wasm 2.0; a byte that is no instruction at all is malformed.
                    throw IsOpcode(op)
                        ? WasmReader.Invalid("constant expression required", at)
                        : WasmReader.Malformed("illegal opcode", at);
            }
        }
    }

    private static bool IsOpcode(byte op) =>
        op is <= 0x05 or (>= 0x0B and <= 0x11) or (>= 0x1A and <= 0x1C) or (>= 0x20 and <= 0x26) or (>= 0x28 and <= 0xC4)
            or (>= 0xD0 and <= 0xD2) or 0xFC or 0xFD;

    private static void ReadElements(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            var at = s.Position;
            var flags = s.ReadU32();
            if (flags > 7)
            {
                throw WasmReader.Malformed("malformed elements segment kind", at);
            }

            var mode = (flags & 1) == 0 ? SegmentMode.Active : (flags & 2) == 0 ? SegmentMode.Passive : SegmentMode.Declarative;
            var table = (flags & 2) != 0 && mode == SegmentMode.Active ? (int)Math.Min(s.ReadU32(), int.MaxValue) : 0;
            var offset = mode == SegmentMode.Active ? ReadConstExpr(s) : null;
            var kind = ValueKind.FuncRef;
            var usesExprs = (flags & 4) != 0;
            if ((flags & 3) != 0)
            {
                if (usesExprs)
                {
                    kind = s.ReadRefKind();
                }
                else
                {
                    var kindAt = s.Position;
                    if (s.ReadByte() != 0)
                    {
                        throw WasmReader.Malformed("malformed element kind", kindAt);
                    }
                }
            }

            var n = s.ReadCount();
            var items = new ConstExpr[n];
            for (var j = 0; j < n; j++)
            {
                if (usesExprs)
                {
                    items[j] = ReadConstExpr(s);
                }
                else
                {
                    var itemAt = s.Position;
                    items[j] = new ConstExpr([new ConstInstruction(0xD2, s.ReadU32(), itemAt)], itemAt);
                }
            }

            m.Elements.Add(new ElementSegment(mode, table, offset, kind, items, at));
        }
    }

    private static void ReadCode(ModuleInfo m, WasmReader s, int functionCount)
    {
        var count = s.ReadCount();
        if (count != functionCount)
        {
            throw WasmReader.Malformed("function and code section have inconsistent lengths", s.Position);
        }

        for (var i = 0; i < count; i++)
        {
            var size = s.ReadU32();
            if (size > s.Remaining)
            {
                throw WasmReader.Malformed("unexpected end of section or function", s.Position);
            }

            var end = s.Position + (int)size;
            var body = new WasmReader(s.Bytes, s.Position, end);
            var groups = body.ReadCount();
            var locals = new List<ValueKind>();
            long total = 0;
            for (var g = 0; g < groups; g++)
            {
                var at = body.Position;
                var n = body.ReadU32();
                total += n;
                if (total > uint.MaxValue)
                {
                    throw WasmReader.Malformed("too many locals", at);
                }

                if (total > MaxLocals)
                {
                    throw WasmReader.Invalid("too many locals", at);
                }

                var kind = body.ReadValueKind();
                for (var k = 0; k < n; k++)
                {
                    locals.Add(kind);
                }
            }

            m.Bodies.Add(new FunctionBody([.. locals], body.Position, end));
            s.Position = end;
        }
    }

    private static void ReadData(ModuleInfo m, WasmReader s)
    {
        var count = s.ReadCount();
        for (var i = 0; i < count; i++)
        {
            var at = s.Position;
            var flags = s.ReadU32();
            if (flags > 2)
            {
                throw WasmReader.Malformed("malformed data segment kind", at);
            }

            var memory = flags == 2 ? (int)Math.Min(s.ReadU32(), int.MaxValue) : 0;
            var offset = flags == 1 ? null : ReadConstExpr(s);
            var length = s.ReadU32();
            if (length > s.Remaining)
            {
                throw WasmReader.Malformed("unexpected end of section or function", s.Position);
            }

            var bytes = s.ReadBytes((int)length).ToArray();
            m.Data.Add(new DataSegment(flags == 1 ? SegmentMode.Passive : SegmentMode.Active, memory, offset, bytes, at));
        }
    }
}
