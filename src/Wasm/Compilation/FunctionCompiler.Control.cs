using System.Reflection.Emit;
using Propeller.Wasm.Binary;
using Propeller.Wasm.Runtime;

namespace Propeller.Wasm.Compilation;

/// <summary>Control instructions, calls, variables, memory and table access.</summary>
internal sealed partial class FunctionCompiler
{
    private void Instruction(byte op, int at)
    {
        switch (op)
        {
            case 0x00:
                if (Live)
                {
                    CallHelper(Emit.Method(typeof(Traps), nameof(Traps.Unreachable)));
                    _il.Emit(OpCodes.Ldnull);
                    _il.Emit(OpCodes.Throw);
                }

                SetUnreachable();
                break;
            case 0x01:
                break;
            case 0x02:
                {
                    var (p, r) = ReadBlockType();
                    PushFrame(op, p, r);
                    break;
                }

            case 0x03:
                {
                    var (p, r) = ReadBlockType();
                    PushFrame(op, p, r);
                    if (Live)
                    {
                        _il.MarkLabel(Frame.StartLabel);
                        EmitLoopHeaderCheck();
                    }

                    break;
                }

            case 0x04:
                {
                    var (p, r) = ReadBlockType();
                    Pop(ValueKind.I32);
                    var live = Live;
                    PushFrame(op, p, r);
                    if (live)
                    {
                        _il.Emit(OpCodes.Brfalse, Frame.StartLabel);
                    }

                    break;
                }

            case 0x05:
                {
                    var frame = Frame;
                    if (frame.Opcode != 0x04 || frame.HasElse)
                    {
                        throw WasmReader.Malformed("unexpected else", at);
                    }

                    CheckFrameEnd(frame);
                    if (frame.Live)
                    {
                        frame.Targeted = true;
                        _il.Emit(OpCodes.Br, frame.EndLabel);
                    }

                    if (!frame.Dead)
                    {
                        _il.MarkLabel(frame.StartLabel);
                    }

                    frame.HasElse = true;
                    frame.Unreachable = false;
                    frame.CodeDead = false;
                    PushAll(frame.Params);
                    break;
                }

            case 0x0B:
                End();
                break;
            case 0x0C:
                {
                    var target = Label(_r.ReadU32());
                    PopAll(target.LabelTypes);
                    PushAll(target.LabelTypes);
                    if (Live)
                    {
                        EmitBranch(target);
                    }

                    SetUnreachable();
                    break;
                }

            case 0x0D:
                {
                    var target = Label(_r.ReadU32());
                    Pop(ValueKind.I32);
                    PopAll(target.LabelTypes);
                    PushAll(target.LabelTypes);
                    if (Live)
                    {
                        if (NeedsFixup(target))
                        {
                            var skip = _il.DefineLabel();
                            _il.Emit(OpCodes.Brfalse, skip);
                            EmitBranch(target);
                            _il.MarkLabel(skip);
                        }
                        else
                        {
                            _il.Emit(OpCodes.Brtrue, BranchLabel(target));
                        }
                    }

                    break;
                }

            case 0x0E:
                BranchTable();
                break;
            case 0x0F:
                {
                    var target = _frames[0];
                    PopAll(target.Results);
                    PushAll(target.Results);
                    if (Live)
                    {
                        EmitBranch(target);
                    }

                    SetUnreachable();
                    break;
                }

            case 0x10:
                CallDirect(_r.ReadU32());
                break;
            case 0x11:
                CallIndirect();
                break;
            case 0x1A:
                Pop();
                Op(OpCodes.Pop);
                break;
            case 0x1B:
                {
                    Pop(ValueKind.I32);
                    var a = Pop();
                    var b = Pop();
                    if (IsRef(a) || IsRef(b) || (a != b && a != Unknown && b != Unknown))
                    {
                        throw Invalid("type mismatch");
                    }

                    var t = a == Unknown ? b : a;
                    Push(t);
                    EmitSelect(t);
                    break;
                }

            case 0x1C:
                {
                    var n = _r.ReadU32();
                    if (n != 1)
                    {
                        throw Invalid("invalid result arity");
                    }

                    var t = _r.ReadValueKind();
                    Pop(ValueKind.I32);
                    Pop(t);
                    Pop(t);
                    Push(t);
                    EmitSelect(t);
                    break;
                }

            case 0x20:
                {
                    var i = LocalIndex();
                    Push(_locals[i]);
                    if (Live)
                    {
                        LoadLocal(i);
                    }

                    break;
                }

            case 0x21:
                {
                    var i = LocalIndex();
                    Pop(_locals[i]);
                    if (Live)
                    {
                        StoreLocal(i);
                    }

                    break;
                }

            case 0x22:
                {
                    var i = LocalIndex();
                    Pop(_locals[i]);
                    Push(_locals[i]);
                    if (Live)
                    {
                        _il.Emit(OpCodes.Dup);
                        StoreLocal(i);
                    }

                    break;
                }

            case 0x23:
                {
                    var i = GlobalIndex();
                    var kind = _module.Globals[i].Kind;
                    Push(kind);
                    if (Live)
                    {
                        LoadGlobalCell(i);
                        CallHelper(Emit.Method(typeof(TableOps), "GetGlobal" + Emit.UnboxSuffix(kind)));
                    }

                    break;
                }

            case 0x24:
                {
                    var i = GlobalIndex();
                    if (!_module.Globals[i].Mutable)
                    {
                        throw Invalid("global is immutable");
                    }

                    var kind = _module.Globals[i].Kind;
                    Pop(kind);
                    if (Live)
                    {
                        LoadGlobalCell(i);
                        CallHelper(Emit.Method(typeof(TableOps), "SetGlobal" + Emit.UnboxSuffix(kind)));
                    }

                    break;
                }

            case 0x25:
                {
                    var t = TableIndex();
                    Pop(ValueKind.I32);
                    Push(_module.Tables[t].ElementKind);
                    TableCall(nameof(TableOps.Get), t);
                    break;
                }

            case 0x26:
                {
                    var t = TableIndex();
                    Pop(_module.Tables[t].ElementKind);
                    Pop(ValueKind.I32);
                    TableCall(nameof(TableOps.Set), t);
                    break;
                }

            case >= 0x28 and <= 0x3E:
                MemoryAccess(op);
                break;
            case 0x3F:
                ZeroByte();
                RequireMemory();
                Push(ValueKind.I32);
                MemoryCall(nameof(MemoryOps.Size));
                break;
            case 0x40:
                ZeroByte();
                RequireMemory();
                Pop(ValueKind.I32);
                Push(ValueKind.I32);
                MemoryCall(nameof(MemoryOps.Grow));
                break;
            case 0x41:
                {
                    var v = _r.ReadS32();
                    Push(ValueKind.I32);
                    if (Live)
                    {
                        Emit.LoadInt(_il, v);
                    }

                    break;
                }

            case 0x42:
                {
                    var v = _r.ReadS64();
                    Push(ValueKind.I64);
                    if (Live)
                    {
                        _il.Emit(OpCodes.Ldc_I8, v);
                    }

                    break;
                }

            case 0x43:
                {
                    var v = _r.ReadF32Bits();
                    Push(ValueKind.F32);
                    MarkOrigin(op, v);
                    if (Live)
                    {
                        var f = BitConverter.Int32BitsToSingle(v);
                        if (float.IsNaN(f))
                        {
                            Emit.LoadInt(_il, v);
                            CallHelper(Emit.Method(typeof(NumericOps), nameof(NumericOps.F32FromBitsOpaque)));
                        }
                        else
                        {
                            _il.Emit(OpCodes.Ldc_R4, f);
                        }
                    }

                    break;
                }

            case 0x44:
                {
                    var v = _r.ReadF64Bits();
                    Push(ValueKind.F64);
                    MarkOrigin(op, v);
                    if (Live)
                    {
                        var d = BitConverter.Int64BitsToDouble(v);
                        if (double.IsNaN(d))
                        {
                            _il.Emit(OpCodes.Ldc_I8, v);
                            CallHelper(Emit.Method(typeof(NumericOps), nameof(NumericOps.F64FromBitsOpaque)));
                        }
                        else
                        {
                            _il.Emit(OpCodes.Ldc_R8, d);
                        }
                    }

                    break;
                }

            case >= 0x45 and <= 0xC4:
                Numeric(op);
                break;
            case 0xD0:
                {
                    var t = _r.ReadRefKind();
                    Push(t);
                    Op(OpCodes.Ldnull);
                    break;
                }

            case 0xD1:
                {
                    var t = Pop();
                    if (t != Unknown && !IsRef(t))
                    {
                        throw Invalid("type mismatch");
                    }

                    Push(ValueKind.I32);
                    if (Live)
                    {
                        _il.Emit(OpCodes.Ldnull);
                        _il.Emit(OpCodes.Ceq);
                    }

                    break;
                }

            case 0xD2:
                {
                    var f = _r.ReadU32();
                    if (f >= _module.FunctionTypes.Count)
                    {
                        throw Invalid("unknown function");
                    }

                    if (!_declaredRefs.Contains((int)f))
                    {
                        throw Invalid("undeclared function reference");
                    }

                    Push(ValueKind.FuncRef);
                    if (Live)
                    {
                        _il.Emit(OpCodes.Ldloc, _instance);
                        Emit.LoadInt(_il, (int)f);
                        CallHelper(Emit.Method(typeof(TableOps), nameof(TableOps.RefFunc)));
                    }

                    break;
                }

            case 0xFC:
                Prefixed(at);
                break;
            case 0xFD:
                throw new ModuleException(ModuleErrorKind.Unsupported, "SIMD (0xfd prefix) is not supported yet", at);
            default:
                throw WasmReader.Malformed($"illegal opcode {op:x2}", at);
        }
    }

    private void End()
    {
        var frame = Frame;
        CheckFrameEnd(frame);
        var wasLive = frame.Live;
        var elseArm = frame.Opcode == 0x04 && !frame.HasElse;
        if (elseArm && !frame.Params.SequenceEqual(frame.Results))
        {
            throw Invalid("type mismatch");
        }

        if (elseArm && !frame.Dead)
        {
            _il.MarkLabel(frame.StartLabel);
        }

        var reachable = !frame.Dead && (wasLive || frame.Targeted || elseArm);
        if (reachable && frame.Opcode != 0x03)
        {
            _il.MarkLabel(frame.EndLabel);
        }

        _frames.RemoveAt(_frames.Count - 1);
        if (_frames.Count == 0)
        {
            if (reachable)
            {
                EmitEpilogue();
            }

            return;
        }

        PushAll(frame.Results);
        if (!reachable && !frame.Dead)
        {
            Frame.CodeDead = true;
        }
    }

    private void BranchTable()
    {
        var count = _r.ReadCount();
        var targets = new ControlFrame[count];
        for (var i = 0; i < count; i++)
        {
            targets[i] = Label(_r.ReadU32());
        }

        var fallback = Label(_r.ReadU32());
        Pop(ValueKind.I32);
        var arity = fallback.LabelTypes.Length;
        foreach (var target in targets.Append(fallback))
        {
            if (target.LabelTypes.Length != arity)
            {
                throw Invalid("type mismatch");
            }

            // Each label's types must match the operands; pop and restore to check without disturbing the stack.
            var saved = _stack.ToList();
            PopAll(target.LabelTypes);
            _stack.Clear();
            _stack.AddRange(saved);
        }

        if (Live)
        {
            var stubs = new List<(Label Stub, ControlFrame Target)>();
            var labels = new Label[count];
            for (var i = 0; i < count; i++)
            {
                if (NeedsFixup(targets[i]))
                {
                    var stub = _il.DefineLabel();
                    stubs.Add((stub, targets[i]));
                    labels[i] = stub;
                }
                else
                {
                    labels[i] = BranchLabel(targets[i]);
                }
            }

            _il.Emit(OpCodes.Switch, labels);
            EmitBranch(fallback);
            foreach (var (stub, target) in stubs)
            {
                _il.MarkLabel(stub);
                EmitBranch(target);
            }
        }

        PopAll(fallback.LabelTypes);
        SetUnreachable();
    }

    private void EmitSelect(ValueKind kind)
    {
        if (!Live)
        {
            return;
        }

        var whenTrue = _il.DefineLabel();
        var done = _il.DefineLabel();
        var temp = Temp(ClrTypes.Of(kind));
        _il.Emit(OpCodes.Brtrue, whenTrue);
        _il.Emit(OpCodes.Stloc, temp);
        _il.Emit(OpCodes.Pop);
        _il.Emit(OpCodes.Ldloc, temp);
        _il.Emit(OpCodes.Br, done);
        _il.MarkLabel(whenTrue);
        _il.Emit(OpCodes.Pop);
        _il.MarkLabel(done);
        Release(temp);
    }

    private void CallDirect(uint index)
    {
        if (index >= _module.FunctionTypes.Count)
        {
            throw Invalid("unknown function");
        }

        var f = (int)index;
        var type = _module.FunctionType(f);
        PopAll(type.Parameters);
        PushAll(type.Results);
        if (!Live)
        {
            return;
        }

        if (f >= _module.ImportedFunctionCount)
        {
            var extras = PushResultAddresses(type);
            _il.Emit(OpCodes.Ldloc, _instance);
            _il.Emit(OpCodes.Call, _methods[f - _module.ImportedFunctionCount]);
            LoadExtraResults(extras);
            return;
        }

        var fn = Temp(typeof(Function));
        _il.Emit(OpCodes.Ldloc, _instance);
        _tokens.EmitField(_il, OpCodes.Ldfld, FunctionsField);
        Emit.LoadInt(_il, f);
        _il.Emit(OpCodes.Ldelem_Ref);
        _il.Emit(OpCodes.Stloc, fn);
        _il.Emit(OpCodes.Ldloc, _state);
        _il.Emit(OpCodes.Ldloc, _instance);
        _tokens.EmitField(_il, OpCodes.Stfld, CallerField);
        CallThrough(fn, type);
    }

    private void CallIndirect()
    {
        var typeIndex = _r.ReadU32();
        var table = _r.ReadU32();
        if (table >= _module.Tables.Count)
        {
            throw Invalid("unknown table");
        }

        if (typeIndex >= _module.Types.Count)
        {
            throw Invalid("unknown type");
        }

        if (_module.Tables[(int)table].ElementKind != ValueKind.FuncRef)
        {
            throw Invalid("type mismatch");
        }

        var type = _module.Types[(int)typeIndex];
        Pop(ValueKind.I32);
        PopAll(type.Parameters);
        PushAll(type.Results);
        if (!Live)
        {
            return;
        }

        var fn = Temp(typeof(Function));
        _il.Emit(OpCodes.Ldloc, _instance);
        Emit.LoadInt(_il, (int)table);
        Emit.LoadInt(_il, type.Id);
        CallHelper(Emit.Method(typeof(TableOps), nameof(TableOps.ResolveIndirect)));
        _il.Emit(OpCodes.Stloc, fn);
        CallThrough(fn, type);
    }

    private void CallThrough(LocalBuilder fn, FuncType type)
    {
        var extras = PushResultAddresses(type);
        _il.Emit(OpCodes.Ldloc, fn);
        _tokens.EmitField(_il, OpCodes.Ldfld, ContextField);
        _il.Emit(OpCodes.Ldloc, fn);
        _tokens.EmitField(_il, OpCodes.Ldfld, CodeField);
        _slackBudget -= _tokens.EmitCalli(_il, type, _slackBudget);
        Release(fn);
        LoadExtraResults(extras);
    }

    private LocalBuilder[] PushResultAddresses(FuncType type)
    {
        var extras = new LocalBuilder[Math.Max(type.Results.Count - 1, 0)];
        for (var j = 0; j < extras.Length; j++)
        {
            extras[j] = Temp(ClrTypes.Of(type.Results[j + 1]));
            _il.Emit(OpCodes.Ldloca, extras[j]);
        }

        return extras;
    }

    private void LoadExtraResults(LocalBuilder[] extras)
    {
        foreach (var local in extras)
        {
            _il.Emit(OpCodes.Ldloc, local);
            Release(local);
        }
    }

    private int LocalIndex()
    {
        var i = _r.ReadU32();
        if (i >= _locals.Length)
        {
            throw Invalid("unknown local");
        }

        return (int)i;
    }

    private int GlobalIndex()
    {
        var i = _r.ReadU32();
        if (i >= _module.Globals.Count)
        {
            throw Invalid("unknown global");
        }

        return (int)i;
    }

    private int TableIndex()
    {
        var i = _r.ReadU32();
        if (i >= _module.Tables.Count)
        {
            throw Invalid("unknown table");
        }

        return (int)i;
    }

    private void LoadLocal(int i)
    {
        if (i < _type.Parameters.Count)
        {
            Emit.LoadArg(_il, i);
        }
        else
        {
            _il.Emit(OpCodes.Ldloc, _ilLocals[i]!);
        }
    }

    private void StoreLocal(int i)
    {
        if (i < _type.Parameters.Count)
        {
            _il.Emit(OpCodes.Starg, (short)i);
        }
        else
        {
            _il.Emit(OpCodes.Stloc, _ilLocals[i]!);
        }
    }

    private void LoadGlobalCell(int i)
    {
        _il.Emit(OpCodes.Ldloc, _instance);
        _tokens.EmitField(_il, OpCodes.Ldfld, GlobalsField);
        Emit.LoadInt(_il, i);
        _il.Emit(OpCodes.Ldelem_Ref);
    }

    private void TableCall(string name, int table)
    {
        if (Live)
        {
            _il.Emit(OpCodes.Ldloc, _instance);
            Emit.LoadInt(_il, table);
            CallHelper(Emit.Method(typeof(TableOps), name));
        }
    }

    private void ZeroByte()
    {
        var at = _r.Position;
        if (_r.ReadByte() != 0)
        {
            throw WasmReader.Malformed("zero byte expected", at);
        }
    }

    private void RequireMemory()
    {
        if (_module.Memories.Count == 0)
        {
            throw Invalid("unknown memory 0");
        }
    }

    private void MemoryCall(string name)
    {
        if (Live)
        {
            _il.Emit(OpCodes.Ldloc, MemoryLocal());
            CallHelper(Emit.Method(typeof(MemoryOps), name));
        }
    }

    private void MemoryAccess(byte op)
    {
        var (kind, size, helper, store) = op switch
        {
            0x28 => (ValueKind.I32, 4, "LoadI32", false),
            0x29 => (ValueKind.I64, 8, "LoadI64", false),
            0x2A => (ValueKind.F32, 4, "LoadF32", false),
            0x2B => (ValueKind.F64, 8, "LoadF64", false),
            0x2C => (ValueKind.I32, 1, "LoadI32S8", false),
            0x2D => (ValueKind.I32, 1, "LoadI32U8", false),
            0x2E => (ValueKind.I32, 2, "LoadI32S16", false),
            0x2F => (ValueKind.I32, 2, "LoadI32U16", false),
            0x30 => (ValueKind.I64, 1, "LoadI64S8", false),
            0x31 => (ValueKind.I64, 1, "LoadI64U8", false),
            0x32 => (ValueKind.I64, 2, "LoadI64S16", false),
            0x33 => (ValueKind.I64, 2, "LoadI64U16", false),
            0x34 => (ValueKind.I64, 4, "LoadI64S32", false),
            0x35 => (ValueKind.I64, 4, "LoadI64U32", false),
            0x36 => (ValueKind.I32, 4, "StoreI32", true),
            0x37 => (ValueKind.I64, 8, "StoreI64", true),
            0x38 => (ValueKind.F32, 4, "StoreF32", true),
            0x39 => (ValueKind.F64, 8, "StoreF64", true),
            0x3A => (ValueKind.I32, 1, "StoreI32x8", true),
            0x3B => (ValueKind.I32, 2, "StoreI32x16", true),
            0x3C => (ValueKind.I64, 1, "StoreI64x8", true),
            0x3D => (ValueKind.I64, 2, "StoreI64x16", true),
            _ => (ValueKind.I64, 4, "StoreI64x32", true),
        };
        var at = _r.Position;
        var align = _r.ReadU32();
        var offset = _r.ReadU32();
        RequireMemory();
        if (align >= 32 || (1u << (int)align) > size)
        {
            throw WasmReader.Invalid("alignment must not be larger than natural", at);
        }

        if (store)
        {
            Pop(kind);
            Pop(ValueKind.I32);
        }
        else
        {
            Pop(ValueKind.I32);
            Push(kind);
        }

        if (Live)
        {
            _il.Emit(OpCodes.Ldloc, MemoryLocal());
            _il.Emit(OpCodes.Ldc_I8, (long)offset);
            CallHelper(Emit.Method(typeof(MemoryOps), helper));
        }
    }

    private void Prefixed(int at)
    {
        var sub = _r.ReadU32();
        switch (sub)
        {
            case <= 7:
                {
                    var from = (sub & 2) == 0 ? ValueKind.F32 : ValueKind.F64;
                    var to = sub < 4 ? ValueKind.I32 : ValueKind.I64;
                    Pop(from);
                    Push(to);
                    var name = $"{(to == ValueKind.I32 ? "I32" : "I64")}TruncSat{(from == ValueKind.F32 ? "F32" : "F64")}{((sub & 1) == 0 ? "S" : "U")}";
                    Num(name);
                    break;
                }

            case 8:
                {
                    var index = _r.ReadU32();
                    ZeroByte();
                    RequireMemory();
                    var segment = CheckDataIndex(index);
                    PopAll([ValueKind.I32, ValueKind.I32, ValueKind.I32]);
                    SegmentCall(typeof(MemoryOps), nameof(MemoryOps.Init), segment);
                    break;
                }

            case 9:
                SegmentCall(typeof(MemoryOps), nameof(MemoryOps.DataDrop), CheckDataIndex(_r.ReadU32()));
                break;
            case 10:
                ZeroByte();
                ZeroByte();
                RequireMemory();
                PopAll([ValueKind.I32, ValueKind.I32, ValueKind.I32]);
                MemoryCall(nameof(MemoryOps.Copy));
                break;
            case 11:
                ZeroByte();
                RequireMemory();
                PopAll([ValueKind.I32, ValueKind.I32, ValueKind.I32]);
                MemoryCall(nameof(MemoryOps.Fill));
                break;
            case 12:
                {
                    var segmentIndex = _r.ReadU32();
                    var table = TableIndex();
                    var segment = CheckElementIndex(segmentIndex);
                    if (_module.Elements[segment].Kind != _module.Tables[table].ElementKind)
                    {
                        throw Invalid("type mismatch");
                    }

                    PopAll([ValueKind.I32, ValueKind.I32, ValueKind.I32]);
                    if (Live)
                    {
                        _il.Emit(OpCodes.Ldloc, _instance);
                        Emit.LoadInt(_il, table);
                        Emit.LoadInt(_il, segment);
                        CallHelper(Emit.Method(typeof(TableOps), nameof(TableOps.Init)));
                    }

                    break;
                }

            case 13:
                SegmentCall(typeof(TableOps), nameof(TableOps.ElemDrop), CheckElementIndex(_r.ReadU32()));
                break;
            case 14:
                {
                    var destination = TableIndex();
                    var source = TableIndex();
                    if (_module.Tables[destination].ElementKind != _module.Tables[source].ElementKind)
                    {
                        throw Invalid("type mismatch");
                    }

                    PopAll([ValueKind.I32, ValueKind.I32, ValueKind.I32]);
                    if (Live)
                    {
                        _il.Emit(OpCodes.Ldloc, _instance);
                        Emit.LoadInt(_il, destination);
                        Emit.LoadInt(_il, source);
                        CallHelper(Emit.Method(typeof(TableOps), nameof(TableOps.Copy)));
                    }

                    break;
                }

            case 15:
                {
                    var t = TableIndex();
                    Pop(ValueKind.I32);
                    Pop(_module.Tables[t].ElementKind);
                    Push(ValueKind.I32);
                    TableCall(nameof(TableOps.Grow), t);
                    break;
                }

            case 16:
                {
                    var t = TableIndex();
                    Push(ValueKind.I32);
                    TableCall(nameof(TableOps.Size), t);
                    break;
                }

            case 17:
                {
                    var t = TableIndex();
                    Pop(ValueKind.I32);
                    Pop(_module.Tables[t].ElementKind);
                    Pop(ValueKind.I32);
                    TableCall(nameof(TableOps.Fill), t);
                    break;
                }

            default:
                throw WasmReader.Malformed($"illegal opcode fc {sub:x2}", at);
        }
    }

    private int CheckDataIndex(uint i)
    {
        if (_module.DataCount is not { } count)
        {
            // Without a data section the index is simply unknown; with one, the data count section was required.
            throw _module.Data.Count == 0 ? Invalid("unknown data segment " + i) : WasmReader.Malformed("data count section required", _r.Position);
        }

        if (i >= count)
        {
            throw Invalid("unknown data segment " + i);
        }

        return (int)i;
    }

    private int CheckElementIndex(uint i)
    {
        if (i >= _module.Elements.Count)
        {
            throw Invalid("unknown elem segment " + i);
        }

        return (int)i;
    }

    private void SegmentCall(Type type, string name, int segment)
    {
        if (Live)
        {
            _il.Emit(OpCodes.Ldloc, _instance);
            Emit.LoadInt(_il, segment);
            CallHelper(Emit.Method(type, name));
        }
    }
}
