using System.Reflection.Emit;

namespace Propeller.Wasm.Compilation;

/// <summary>Numeric instructions 0x45..0xC4: plain IL where CLR and wasm semantics agree, NumericOps helpers otherwise.</summary>
internal sealed partial class FunctionCompiler
{
    private const ValueKind I32 = ValueKind.I32;
    private const ValueKind I64 = ValueKind.I64;
    private const ValueKind F32 = ValueKind.F32;
    private const ValueKind F64 = ValueKind.F64;

    private void Numeric(byte op)
    {
        switch (op)
        {
            case 0x45:
                Unary(I32, I32);
                Ops(OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
            case >= 0x46 and <= 0x4F:
                Binary(I32, I32);
                Compare(op - 0x46);
                break;
            case 0x50:
                Unary(I64, I32);
                Ops(OpCodes.Ldc_I4_0, OpCodes.Conv_I8, OpCodes.Ceq);
                break;
            case >= 0x51 and <= 0x5A:
                Binary(I64, I32);
                Compare(op - 0x51);
                break;
            case >= 0x5B and <= 0x60:
                Binary(F32, I32);
                FloatCompare(op - 0x5B);
                break;
            case >= 0x61 and <= 0x66:
                Binary(F64, I32);
                FloatCompare(op - 0x61);
                break;
            case >= 0x67 and <= 0x69:
                Unary(I32, I32);
                Num(op switch { 0x67 => "I32Clz", 0x68 => "I32Ctz", _ => "I32Popcnt" });
                break;
            case >= 0x6A and <= 0x78:
                Binary(I32, I32);
                IntBinary(op - 0x6A, "I32", 31);
                break;
            case >= 0x79 and <= 0x7B:
                Unary(I64, I64);
                Num(op switch { 0x79 => "I64Clz", 0x7A => "I64Ctz", _ => "I64Popcnt" });
                break;
            case >= 0x7C and <= 0x8A:
                Binary(I64, I64);
                IntBinary(op - 0x7C, "I64", 63);
                break;
            case >= 0x8B and <= 0x91:
                Unary(F32, F32);
                FloatUnary(op - 0x8B, "F32", typeof(MathF));
                break;
            case >= 0x92 and <= 0x98:
                {
                    var opaque = IsFoldableOperand(_stack.Count - 1) || IsFoldableOperand(_stack.Count - 2);
                    Binary(F32, F32);
                    FloatBinary(op - 0x92, "F32", opaque);
                    break;
                }

            case >= 0x99 and <= 0x9F:
                Unary(F64, F64);
                FloatUnary(op - 0x99, "F64", typeof(Math));
                break;
            case >= 0xA0 and <= 0xA6:
                {
                    var opaque = IsFoldableOperand(_stack.Count - 1) || IsFoldableOperand(_stack.Count - 2);
                    Binary(F64, F64);
                    FloatBinary(op - 0xA0, "F64", opaque);
                    break;
                }

            default:
                Conversion(op);
                break;
        }
    }

    private void Conversion(byte op)
    {
        switch (op)
        {
            case 0xA7:
                Unary(I64, I32);
                Op(OpCodes.Conv_I4);
                break;
            case 0xA8:
                Unary(F32, I32);
                Num("I32TruncF32S");
                break;
            case 0xA9:
                Unary(F32, I32);
                Num("I32TruncF32U");
                break;
            case 0xAA:
                Unary(F64, I32);
                Num("I32TruncF64S");
                break;
            case 0xAB:
                Unary(F64, I32);
                Num("I32TruncF64U");
                break;
            case 0xAC:
                Unary(I32, I64);
                Op(OpCodes.Conv_I8);
                break;
            case 0xAD:
                Unary(I32, I64);
                Op(OpCodes.Conv_U8);
                break;
            case 0xAE:
                Unary(F32, I64);
                Num("I64TruncF32S");
                break;
            case 0xAF:
                Unary(F32, I64);
                Num("I64TruncF32U");
                break;
            case 0xB0:
                Unary(F64, I64);
                Num("I64TruncF64S");
                break;
            case 0xB1:
                Unary(F64, I64);
                Num("I64TruncF64U");
                break;
            case 0xB2:
                Unary(I32, F32);
                Op(OpCodes.Conv_R4);
                break;
            case 0xB3:
                Unary(I32, F32);
                Num("F32ConvertI32U");
                break;
            case 0xB4:
                Unary(I64, F32);
                Op(OpCodes.Conv_R4);
                break;
            case 0xB5:
                Unary(I64, F32);
                Num("F32ConvertI64U");
                break;
            case 0xB6:
                {
                    var promoted = _origins.TryGetValue(_stack.Count - 1, out var origin) && origin.Opcode == 0xBB;
                    Unary(F64, F32);
                    if (promoted)
                    {
                        Num(nameof(Runtime.NumericOps.F32DemoteOpaque));
                    }
                    else
                    {
                        Op(OpCodes.Conv_R4);
                    }

                    break;
                }

            case 0xB7:
                Unary(I32, F64);
                Op(OpCodes.Conv_R8);
                break;
            case 0xB8:
                Unary(I32, F64);
                Num("F64ConvertI32U");
                break;
            case 0xB9:
                Unary(I64, F64);
                Op(OpCodes.Conv_R8);
                break;
            case 0xBA:
                Unary(I64, F64);
                Num("F64ConvertI64U");
                break;
            case 0xBB:
                Unary(F32, F64);
                MarkOrigin(op, 0);
                Op(OpCodes.Conv_R8);
                break;
            case 0xBC:
                Unary(F32, I32);
                Num("I32Reinterpret");
                break;
            case 0xBD:
                Unary(F64, I64);
                Num("I64Reinterpret");
                break;
            case 0xBE:
                Unary(I32, F32);
                Num("F32Reinterpret");
                break;
            case 0xBF:
                Unary(I64, F64);
                Num("F64Reinterpret");
                break;
            case 0xC0:
                Unary(I32, I32);
                Op(OpCodes.Conv_I1);
                break;
            case 0xC1:
                Unary(I32, I32);
                Op(OpCodes.Conv_I2);
                break;
            case 0xC2:
                Unary(I64, I64);
                Ops(OpCodes.Conv_I1, OpCodes.Conv_I8);
                break;
            case 0xC3:
                Unary(I64, I64);
                Ops(OpCodes.Conv_I2, OpCodes.Conv_I8);
                break;
            default:
                Unary(I64, I64);
                Ops(OpCodes.Conv_I4, OpCodes.Conv_I8);
                break;
        }
    }

    private void Unary(ValueKind input, ValueKind output)
    {
        Pop(input);
        Push(output);
    }

    private void Binary(ValueKind input, ValueKind output)
    {
        Pop(input);
        Pop(input);
        Push(output);
    }

    private void Ops(params OpCode[] opcodes)
    {
        if (Live)
        {
            foreach (var opcode in opcodes)
            {
                _il.Emit(opcode);
            }
        }
    }

    /// <summary>eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u.</summary>
    private void Compare(int index)
    {
        switch (index)
        {
            case 0:
                Op(OpCodes.Ceq);
                break;
            case 1:
                Ops(OpCodes.Ceq, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
            case 2:
                Op(OpCodes.Clt);
                break;
            case 3:
                Op(OpCodes.Clt_Un);
                break;
            case 4:
                Op(OpCodes.Cgt);
                break;
            case 5:
                Op(OpCodes.Cgt_Un);
                break;
            case 6:
                Ops(OpCodes.Cgt, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
            case 7:
                Ops(OpCodes.Cgt_Un, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
            case 8:
                Ops(OpCodes.Clt, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
            default:
                Ops(OpCodes.Clt_Un, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
        }
    }

    /// <summary>eq ne lt gt le ge; the unordered forms make le/ge false for NaN.</summary>
    private void FloatCompare(int index)
    {
        switch (index)
        {
            case 0:
                Op(OpCodes.Ceq);
                break;
            case 1:
                Ops(OpCodes.Ceq, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
            case 2:
                Op(OpCodes.Clt);
                break;
            case 3:
                Op(OpCodes.Cgt);
                break;
            case 4:
                Ops(OpCodes.Cgt_Un, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
            default:
                Ops(OpCodes.Clt_Un, OpCodes.Ldc_I4_0, OpCodes.Ceq);
                break;
        }
    }

    /// <summary>add sub mul div_s div_u rem_s rem_u and or xor shl shr_s shr_u rotl rotr.</summary>
    private void IntBinary(int index, string prefix, int mask)
    {
        switch (index)
        {
            case 0:
                Op(OpCodes.Add);
                break;
            case 1:
                Op(OpCodes.Sub);
                break;
            case 2:
                Op(OpCodes.Mul);
                break;
            case 3:
                Num(prefix + "DivS");
                break;
            case 4:
                Num(prefix + "DivU");
                break;
            case 5:
                Num(prefix + "RemS");
                break;
            case 6:
                Num(prefix + "RemU");
                break;
            case 7:
                Op(OpCodes.And);
                break;
            case 8:
                Op(OpCodes.Or);
                break;
            case 9:
                Op(OpCodes.Xor);
                break;
            case >= 10 and <= 12:
                // IL shifts take an int32 count and are unspecified for counts >= width: mask like wasm does.
                if (Live)
                {
                    if (mask == 63)
                    {
                        _il.Emit(OpCodes.Conv_I4);
                    }

                    Emit.LoadInt(_il, mask);
                    _il.Emit(OpCodes.And);
                    _il.Emit(index switch { 10 => OpCodes.Shl, 11 => OpCodes.Shr, _ => OpCodes.Shr_Un });
                }

                break;
            case 13:
                Num(prefix + "Rotl");
                break;
            default:
                Num(prefix + "Rotr");
                break;
        }
    }

    /// <summary>abs neg ceil floor trunc nearest sqrt.</summary>
    private void FloatUnary(int index, string prefix, Type math)
    {
        switch (index)
        {
            case 0:
                Num(prefix + "Abs");
                break;
            case 1:
                Num(prefix + "Neg");
                break;
            case 2:
                CallMath(math, "Ceiling", prefix);
                break;
            case 3:
                CallMath(math, "Floor", prefix);
                break;
            case 4:
                CallMath(math, "Truncate", prefix);
                break;
            case 5:
                Num(prefix + "Nearest");
                break;
            default:
                CallMath(math, "Sqrt", prefix);
                break;
        }
    }

    private void CallMath(Type math, string name, string prefix)
    {
        if (Live)
        {
            var t = prefix == "F32" ? typeof(float) : typeof(double);
            CallHelper(math.GetMethod(name, [t])!);
        }
    }

    /// <summary>add sub mul div min max copysign.</summary>
    private void FloatBinary(int index, string prefix, bool opaque)
    {
        if (opaque && index <= 3)
        {
            Num(prefix + index switch { 0 => "AddOpaque", 1 => "SubOpaque", 2 => "MulOpaque", _ => "DivOpaque" });
            return;
        }

        switch (index)
        {
            case 0:
                Op(OpCodes.Add);
                break;
            case 1:
                Op(OpCodes.Sub);
                break;
            case 2:
                Op(OpCodes.Mul);
                break;
            case 3:
                Op(OpCodes.Div);
                break;
            case 4:
                Num(prefix + "Min");
                break;
            case 5:
                Num(prefix + "Max");
                break;
            default:
                Num(prefix + "Copysign");
                break;
        }
    }
}
