using System.Reflection;
using System.Reflection.Emit;
using Propeller.Wasm.Binary;
using Propeller.Wasm.Runtime;

namespace Propeller.Wasm.Compilation;

/// <summary>
/// Validates one function body and, in the same pass, emits its CIL. Wasm locals become IL arguments and locals, and the
/// wasm operand stack maps onto the IL evaluation stack; values are spilled to temporaries only where a branch must drop
/// operands below its arguments. No IL is emitted for unreachable code, so the IL stack always mirrors the validator's.
/// </summary>
internal sealed partial class FunctionCompiler
{
    private const ValueKind Unknown = default;

    private static readonly FieldInfo FunctionsField = Emit.Field(typeof(Instance), nameof(Instance.Functions));
    private static readonly FieldInfo MemoriesField = Emit.Field(typeof(Instance), nameof(Instance.Memories));
    private static readonly FieldInfo GlobalsField = Emit.Field(typeof(Instance), nameof(Instance.Globals));
    private static readonly FieldInfo StateField = Emit.Field(typeof(Instance), nameof(Instance.State));
    private static readonly FieldInfo DepthField = Emit.Field(typeof(ExecutionState), nameof(ExecutionState.Depth));
    private static readonly FieldInfo FuelField = Emit.Field(typeof(ExecutionState), nameof(ExecutionState.Fuel));
    private static readonly FieldInfo CallerField = Emit.Field(typeof(ExecutionState), nameof(ExecutionState.CallerInstance));
    private static readonly FieldInfo ContextField = Emit.Field(typeof(Function), nameof(Function.Context));
    private static readonly FieldInfo CodeField = Emit.Field(typeof(Function), nameof(Function.Code));

    private readonly ModuleInfo _module;
    private readonly FuncType _type;
    private readonly FunctionBody _body;
    private readonly MethodInfo[] _methods;
    private readonly HashSet<int> _declaredRefs;
    private readonly ILGenerator _il;
    private readonly WasmReader _r;
    private readonly ValueKind[] _locals;
    private readonly LocalBuilder?[] _ilLocals;
    private readonly List<ValueKind> _stack = new(32);
    private readonly List<ControlFrame> _frames = new(16);
    private readonly Dictionary<Type, Stack<LocalBuilder>> _temps = [];

    /// <summary>Stack slots produced directly by a float constant or a promote (see NumericOps' Opaque helpers).</summary>
    private readonly Dictionary<int, (byte Opcode, long Bits)> _origins = [];
    private readonly int _contextArg;
    private readonly HelperTokens _tokens;

    /// <summary>Remaining max-stack overestimate allowed for token calls (see HelperTokens).</summary>
    private int _slackBudget = 30_000;
    private LocalBuilder _instance = null!;
    private LocalBuilder _state = null!;

    /// <summary>The fuel balance, kept in a local (a register) and written to the store only around calls and returns.</summary>
    private LocalBuilder? _fuel;
    private LocalBuilder? _memory;
    private Label _deferredPrologue;
    private Label _bodyStart;

    public FunctionCompiler(
        ModuleInfo module, int functionIndex, MethodInfo[] methods, HashSet<int> declaredRefs, HelperTokens tokens, ILGenerator il)
    {
        _tokens = tokens;
        _module = module;
        _type = module.FunctionType(functionIndex);
        _body = module.Bodies[functionIndex - module.ImportedFunctionCount];
        _methods = methods;
        _declaredRefs = declaredRefs;
        _il = il;
        _r = new WasmReader(module.Bytes, _body.CodeStart, _body.CodeEnd);
        _locals = [.. _type.Parameters, .. _body.Locals];
        _ilLocals = new LocalBuilder?[_locals.Length];
        _contextArg = ClrTypes.ContextArgument(_type);
    }

    /// <summary>Emit fuel metering (Config.ConsumeFuel).</summary>
    public bool Fuel { get; init; }

    /// <summary>Emit epoch deadline checks (Config.EpochInterruption).</summary>
    public bool Epochs { get; init; }

    /// <summary>Fuel of the current basic block not yet charged; a function starts with 1 unit, as in Wasmtime.</summary>
    private long _fuelPending = 1;

    private ControlFrame Frame => _frames[^1];

    private bool Live => Frame.Live;

    public void Compile()
    {
        EmitPrologue();
        _frames.Add(new ControlFrame
        {
            Opcode = 0x02,
            Params = [],
            Results = [.. _type.Results],
            Height = 0,
            Dead = false,
            EndLabel = _il.DefineLabel(),
        });
        while (_frames.Count > 0)
        {
            var at = _r.Position;
            if (_r.AtEnd)
            {
                throw WasmReader.Malformed("unexpected end of section or function", at);
            }

            var op = _r.ReadByte();
            if (Fuel)
            {
                MeterFuel(op);
            }

            try
            {
                Instruction(op, at);
                if (Fuel && op is 0x10 or 0x11 && Live)
                {
                    // The callee (or host) charged the store; continue from its balance.
                    LoadFuel();
                }
            }
            catch (ModuleException)
            {
                throw;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException)
            {
                throw new ModuleException(ModuleErrorKind.Invalid, $"cannot compile instruction 0x{op:x2}: {e.Message}", at);
            }
        }

        if (!_r.AtEnd)
        {
            throw WasmReader.Malformed("section size mismatch", _r.Position);
        }

        EmitDeferredPrologue();
    }

    private void EmitPrologue()
    {
        for (var i = _type.Parameters.Count; i < _locals.Length; i++)
        {
            _ilLocals[i] = _il.DeclareLocal(ClrTypes.Of(_locals[i]));
        }

        _instance = _il.DeclareLocal(typeof(Instance));
        _state = _il.DeclareLocal(typeof(ExecutionState));
        _fuel = Fuel ? _il.DeclareLocal(typeof(long)) : null;
        Emit.LoadArg(_il, _contextArg);
        _tokens.EmitType(_il, OpCodes.Castclass, typeof(Instance));
        _il.Emit(OpCodes.Stloc, _instance);
        _il.Emit(OpCodes.Ldloc, _instance);
        _tokens.EmitField(_il, OpCodes.Ldfld, StateField);
        _il.Emit(OpCodes.Stloc, _state);
        EmitEntryCheck();

        // The memory object is loaded into a local only if the body touches memory, which is known at the end: the
        // prologue jumps to a block emitted after the body (see EmitDeferredPrologue), which jumps back here.
        _deferredPrologue = _il.DefineLabel();
        _bodyStart = _il.DefineLabel();
        _il.Emit(OpCodes.Br, _deferredPrologue);
        _il.MarkLabel(_bodyStart);
    }

    private LocalBuilder MemoryLocal() => _memory ??= _il.DeclareLocal(typeof(Memory));

    private void EmitDeferredPrologue()
    {
        _il.MarkLabel(_deferredPrologue);
        if (_memory is not null)
        {
            _il.Emit(OpCodes.Ldloc, _instance);
            _tokens.EmitField(_il, OpCodes.Ldfld, MemoriesField);
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Ldelem_Ref);
            _il.Emit(OpCodes.Stloc, _memory);
        }

        _il.Emit(OpCodes.Br, _bodyStart);
    }

    /// <summary>Function-entry hook: call depth and native stack floor, then the fuel and epoch checks when compiled in.</summary>
    private void EmitEntryCheck()
    {
        _il.Emit(OpCodes.Ldloc, _state);
        CallHelper(Emit.Method(typeof(ExecutionState), nameof(ExecutionState.Enter)));
        if (Fuel)
        {
            // The function's own unit is charged before the check, so a store with no fuel traps on its first call.
            LoadFuel();
            ChargeFuel();
        }

        EmitLoopHeaderCheck();
    }

    /// <summary>Loop-header hook (also run at function entry): fuel and epoch deadline checks.</summary>
    private void EmitLoopHeaderCheck()
    {
        if (Fuel)
        {
            var enough = _il.DefineLabel();
            _il.Emit(OpCodes.Ldloc, _fuel!);
            _il.Emit(OpCodes.Ldc_I8, 0L);
            _il.Emit(OpCodes.Bge, enough);
            _il.Emit(OpCodes.Ldloc, _state);
            CallHelper(Emit.Method(typeof(Traps), nameof(Traps.OutOfFuel)));
            _il.MarkLabel(enough);
        }

        if (Epochs)
        {
            _il.Emit(OpCodes.Ldloc, _state);
            CallHelper(Emit.Method(typeof(ExecutionState), nameof(ExecutionState.CheckEpoch)));
        }
    }

    /// <summary>
    /// Wasmtime's cost model: 1 per operator except nop, drop, block, loop, end, else, return and unreachable, accumulated at
    /// compile time and charged to the store's counter at basic-block boundaries and before calls (so the callee and host
    /// see an exact balance). Checks happen only at function entry and loop headers.
    /// </summary>
    private void MeterFuel(byte op)
    {
        if (!Live)
        {
            _fuelPending = 0;
            return;
        }

        if (op is not (0x01 or 0x1A or 0x02 or 0x03 or 0x0B or 0x05 or 0x0F or 0x00))
        {
            _fuelPending++;
        }

        if (_fuelPending > 0 && op is 0x00 or 0x03 or 0x04 or 0x05 or 0x0B or 0x0C or 0x0D or 0x0E or 0x0F or 0x10 or 0x11)
        {
            ChargeFuel();
        }

        if (op is 0x10 or 0x11)
        {
            StoreFuel();
        }
    }

    private void ChargeFuel()
    {
        _il.Emit(OpCodes.Ldloc, _fuel!);
        _il.Emit(OpCodes.Ldc_I8, _fuelPending);
        _il.Emit(OpCodes.Sub);
        _il.Emit(OpCodes.Stloc, _fuel!);
        _fuelPending = 0;
    }

    private void LoadFuel()
    {
        _il.Emit(OpCodes.Ldloc, _state);
        _tokens.EmitField(_il, OpCodes.Ldfld, FuelField);
        _il.Emit(OpCodes.Stloc, _fuel!);
    }

    private void StoreFuel()
    {
        _il.Emit(OpCodes.Ldloc, _state);
        _il.Emit(OpCodes.Ldloc, _fuel!);
        _tokens.EmitField(_il, OpCodes.Stfld, FuelField);
    }

    private void EmitEpilogue()
    {
        if (_type.Results.Count > 1)
        {
            var temps = new LocalBuilder[_type.Results.Count];
            for (var j = _type.Results.Count - 1; j >= 1; j--)
            {
                temps[j] = Temp(ClrTypes.Of(_type.Results[j]));
                _il.Emit(OpCodes.Stloc, temps[j]);
            }

            for (var j = 1; j < _type.Results.Count; j++)
            {
                Emit.LoadArg(_il, _type.Parameters.Count + j - 1);
                _il.Emit(OpCodes.Ldloc, temps[j]);
                Emit.StoreIndirect(_il, ClrTypes.Of(_type.Results[j]));
                Release(temps[j]);
            }
        }

        if (Fuel)
        {
            StoreFuel();
        }

        _il.Emit(OpCodes.Ldloc, _state);
        _il.Emit(OpCodes.Ldloc, _state);
        _tokens.EmitField(_il, OpCodes.Ldfld, DepthField);
        _il.Emit(OpCodes.Ldc_I4_1);
        _il.Emit(OpCodes.Sub);
        _tokens.EmitField(_il, OpCodes.Stfld, DepthField);
        _il.Emit(OpCodes.Ret);
    }

    // ---- validator stack ----------------------------------------------------------------------------------------------

    private ModuleException Invalid(string reason) => WasmReader.Invalid(reason, _r.Position);

    private void Push(ValueKind kind)
    {
        _origins.Remove(_stack.Count);
        _stack.Add(kind);
    }

    private void MarkOrigin(byte opcode, long bits) => _origins[_stack.Count - 1] = (opcode, bits);

    /// <summary>A constant operand RyuJIT would fold away with an identity rule (±0, ±1) or a NaN constant.</summary>
    private bool IsFoldableOperand(int slot)
    {
        if (slot < 0 || !_origins.TryGetValue(slot, out var origin))
        {
            return false;
        }

        var value = origin.Opcode switch
        {
            0x43 => BitConverter.Int32BitsToSingle((int)origin.Bits),
            0x44 => BitConverter.Int64BitsToDouble(origin.Bits),
            _ => 2.0,
        };
        return double.IsNaN(value) || value == 0 || Math.Abs(value) == 1;
    }

    private ValueKind Pop()
    {
        var frame = Frame;
        if (_stack.Count == frame.Height)
        {
            if (frame.Unreachable)
            {
                return Unknown;
            }

            throw Invalid("type mismatch");
        }

        var kind = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return kind;
    }

    private ValueKind Pop(ValueKind expected)
    {
        var actual = Pop();
        if (actual != expected && actual != Unknown && expected != Unknown)
        {
            throw Invalid("type mismatch");
        }

        return actual == Unknown ? expected : actual;
    }

    private void PopAll(IReadOnlyList<ValueKind> kinds)
    {
        for (var i = kinds.Count - 1; i >= 0; i--)
        {
            Pop(kinds[i]);
        }
    }

    private void PushAll(IReadOnlyList<ValueKind> kinds)
    {
        foreach (var k in kinds)
        {
            Push(k);
        }
    }

    private static bool IsRef(ValueKind kind) => kind is ValueKind.FuncRef or ValueKind.ExternRef;

    private static bool IsNumeric(ValueKind kind) => kind is ValueKind.I32 or ValueKind.I64 or ValueKind.F32 or ValueKind.F64;

    private void SetUnreachable()
    {
        var frame = Frame;
        _stack.RemoveRange(frame.Height, _stack.Count - frame.Height);
        frame.Unreachable = true;
        frame.CodeDead = true;
    }

    private void PushFrame(byte opcode, ValueKind[] parameters, ValueKind[] results)
    {
        PopAll(parameters);
        var dead = !Live;
        var frame = new ControlFrame
        {
            Opcode = opcode,
            Params = parameters,
            Results = results,
            Height = _stack.Count,
            Dead = dead,
            EndLabel = dead ? default : _il.DefineLabel(),
            StartLabel = dead || opcode == 0x02 ? default : _il.DefineLabel(),
        };
        PushAll(parameters);
        _frames.Add(frame);
    }

    private void CheckFrameEnd(ControlFrame frame)
    {
        PopAll(frame.Results);
        if (_stack.Count != frame.Height)
        {
            throw Invalid("type mismatch");
        }
    }

    private ControlFrame Label(uint depth)
    {
        if (depth >= _frames.Count)
        {
            throw Invalid("unknown label");
        }

        return _frames[_frames.Count - 1 - (int)depth];
    }

    // ---- temporaries and IL helpers -------------------------------------------------------------------------------------

    private LocalBuilder Temp(Type type)
    {
        if (_temps.TryGetValue(type, out var pool) && pool.Count > 0)
        {
            return pool.Pop();
        }

        return _il.DeclareLocal(type);
    }

    private void Release(LocalBuilder local)
    {
        if (!_temps.TryGetValue(local.LocalType, out var pool))
        {
            pool = new Stack<LocalBuilder>();
            _temps[local.LocalType] = pool;
        }

        pool.Push(local);
    }

    private void Op(OpCode opcode)
    {
        if (Live)
        {
            _il.Emit(opcode);
        }
    }

    private void Call(Type type, string name)
    {
        if (Live)
        {
            CallHelper(Emit.Method(type, name));
        }
    }

    private void CallHelper(MethodInfo method) => _slackBudget -= _tokens.EmitCall(_il, method, _slackBudget);

    private void Num(string name) => Call(typeof(NumericOps), name);

    /// <summary>Branches to <paramref name="target"/>, first dropping operands that sit below the branch arguments.</summary>
    private void EmitBranch(ControlFrame target)
    {
        var types = target.LabelTypes;
        var extras = _stack.Count - target.Height - types.Length;
        if (extras > 0)
        {
            var temps = new LocalBuilder[types.Length];
            for (var i = types.Length - 1; i >= 0; i--)
            {
                temps[i] = Temp(ClrTypes.Of(types[i]));
                _il.Emit(OpCodes.Stloc, temps[i]);
            }

            for (var i = 0; i < extras; i++)
            {
                _il.Emit(OpCodes.Pop);
            }

            for (var i = 0; i < types.Length; i++)
            {
                _il.Emit(OpCodes.Ldloc, temps[i]);
                Release(temps[i]);
            }
        }

        if (target.Opcode == 0x03)
        {
            _il.Emit(OpCodes.Br, target.StartLabel);
        }
        else
        {
            target.Targeted = true;
            _il.Emit(OpCodes.Br, target.EndLabel);
        }
    }

    private bool NeedsFixup(ControlFrame target) => _stack.Count - target.Height - target.LabelTypes.Length > 0;

    private static Label BranchLabel(ControlFrame target)
    {
        if (target.Opcode == 0x03)
        {
            return target.StartLabel;
        }

        target.Targeted = true;
        return target.EndLabel;
    }

    private (ValueKind[] Params, ValueKind[] Results) ReadBlockType()
    {
        var at = _r.Position;
        var b = _r.PeekByte();
        if (b == 0x40)
        {
            _r.ReadByte();
            return ([], []);
        }

        if (b is 0x7F or 0x7E or 0x7D or 0x7C or 0x7B or 0x70 or 0x6F)
        {
            _r.ReadByte();
            return ([], [(ValueKind)b]);
        }

        var index = _r.ReadS33();
        if (index < 0)
        {
            throw WasmReader.Malformed("malformed value type", at);
        }

        if (index >= _module.Types.Count)
        {
            throw WasmReader.Invalid("unknown type", at);
        }

        var type = _module.Types[(int)index];
        return ([.. type.Parameters], [.. type.Results]);
    }
}
