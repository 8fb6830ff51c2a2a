using System.Numerics;
using System.Runtime.CompilerServices;

namespace Propeller.Wasm.Runtime;

/// <summary>
/// Numeric instructions whose CLR equivalent differs from wasm: trapping division (int.MinValue % -1 must be 0, not an
/// OverflowException), checked and saturating truncation, unsigned-to-float rounding, and sign/abs operations done on the
/// bits so NaN payloads are preserved (wasm-engine-reference.md §2.3).
/// </summary>
internal static class NumericOps
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int I32DivS(int a, int b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        if (b == -1 && a == int.MinValue)
        {
            Traps.IntegerOverflow();
        }

        return a / b;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int I32DivU(int a, int b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        return (int)((uint)a / (uint)b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int I32RemS(int a, int b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        return b == -1 ? 0 : a % b;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int I32RemU(int a, int b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        return (int)((uint)a % (uint)b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long I64DivS(long a, long b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        if (b == -1 && a == long.MinValue)
        {
            Traps.IntegerOverflow();
        }

        return a / b;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long I64DivU(long a, long b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        return (long)((ulong)a / (ulong)b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long I64RemS(long a, long b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        return b == -1 ? 0 : a % b;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long I64RemU(long a, long b)
    {
        if (b == 0)
        {
            Traps.DivideByZero();
        }

        return (long)((ulong)a % (ulong)b);
    }

    public static int I32Clz(int a) => BitOperations.LeadingZeroCount((uint)a);

    public static int I32Ctz(int a) => BitOperations.TrailingZeroCount(a);

    public static int I32Popcnt(int a) => BitOperations.PopCount((uint)a);

    public static int I32Rotl(int a, int b) => (int)BitOperations.RotateLeft((uint)a, b);

    public static int I32Rotr(int a, int b) => (int)BitOperations.RotateRight((uint)a, b);

    public static long I64Clz(long a) => BitOperations.LeadingZeroCount((ulong)a);

    public static long I64Ctz(long a) => BitOperations.TrailingZeroCount(a);

    public static long I64Popcnt(long a) => BitOperations.PopCount((ulong)a);

    public static long I64Rotl(long a, long b) => (long)BitOperations.RotateLeft((ulong)a, (int)b);

    public static long I64Rotr(long a, long b) => (long)BitOperations.RotateRight((ulong)a, (int)b);

    public static float F32Abs(float a) => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(a) & int.MaxValue);

    public static float F32Neg(float a) => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(a) ^ int.MinValue);

    public static float F32Copysign(float a, float b) => BitConverter.Int32BitsToSingle(
        (BitConverter.SingleToInt32Bits(a) & int.MaxValue) | (BitConverter.SingleToInt32Bits(b) & int.MinValue));

    public static double F64Abs(double a) => BitConverter.Int64BitsToDouble(BitConverter.DoubleToInt64Bits(a) & long.MaxValue);

    public static double F64Neg(double a) => BitConverter.Int64BitsToDouble(BitConverter.DoubleToInt64Bits(a) ^ long.MinValue);

    public static double F64Copysign(double a, double b) => BitConverter.Int64BitsToDouble(
        (BitConverter.DoubleToInt64Bits(a) & long.MaxValue) | (BitConverter.DoubleToInt64Bits(b) & long.MinValue));

    public static float F32Min(float a, float b) => MathF.Min(a, b);

    public static float F32Max(float a, float b) => MathF.Max(a, b);

    public static double F64Min(double a, double b) => Math.Min(a, b);

    public static double F64Max(double a, double b) => Math.Max(a, b);

    public static float F32Nearest(float a) => MathF.Round(a, MidpointRounding.ToEven);

    public static double F64Nearest(double a) => Math.Round(a, MidpointRounding.ToEven);

    public static int I32TruncF32S(float a)
    {
        if (float.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 2147483648f || a < -2147483648f)
        {
            Traps.IntegerOverflow();
        }

        return (int)a;
    }

    public static int I32TruncF32U(float a)
    {
        if (float.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 4294967296f || a <= -1f)
        {
            Traps.IntegerOverflow();
        }

        return (int)(uint)a;
    }

    public static int I32TruncF64S(double a)
    {
        if (double.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 2147483648.0 || a <= -2147483649.0)
        {
            Traps.IntegerOverflow();
        }

        return (int)a;
    }

    public static int I32TruncF64U(double a)
    {
        if (double.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 4294967296.0 || a <= -1.0)
        {
            Traps.IntegerOverflow();
        }

        return (int)(uint)a;
    }

    public static long I64TruncF32S(float a)
    {
        if (float.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 9223372036854775808f || a < -9223372036854775808f)
        {
            Traps.IntegerOverflow();
        }

        return (long)a;
    }

    public static long I64TruncF32U(float a)
    {
        if (float.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 18446744073709551616f || a <= -1f)
        {
            Traps.IntegerOverflow();
        }

        return (long)(ulong)a;
    }

    public static long I64TruncF64S(double a)
    {
        if (double.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 9223372036854775808.0 || a < -9223372036854775808.0)
        {
            Traps.IntegerOverflow();
        }

        return (long)a;
    }

    public static long I64TruncF64U(double a)
    {
        if (double.IsNaN(a))
        {
            Traps.InvalidConversion();
        }

        if (a >= 18446744073709551616.0 || a <= -1.0)
        {
            Traps.IntegerOverflow();
        }

        return (long)(ulong)a;
    }

    public static int I32TruncSatF32S(float a) =>
        float.IsNaN(a) ? 0 : a >= 2147483648f ? int.MaxValue : a < -2147483648f ? int.MinValue : (int)a;

    public static int I32TruncSatF32U(float a) =>
        float.IsNaN(a) || a <= -1f ? 0 : a >= 4294967296f ? -1 : (int)(uint)a;

    public static int I32TruncSatF64S(double a) =>
        double.IsNaN(a) ? 0 : a >= 2147483648.0 ? int.MaxValue : a <= -2147483649.0 ? int.MinValue : (int)a;

    public static int I32TruncSatF64U(double a) =>
        double.IsNaN(a) || a <= -1.0 ? 0 : a >= 4294967296.0 ? -1 : (int)(uint)a;

    public static long I64TruncSatF32S(float a) =>
        float.IsNaN(a) ? 0 : a >= 9223372036854775808f ? long.MaxValue : a < -9223372036854775808f ? long.MinValue : (long)a;

    public static long I64TruncSatF32U(float a) =>
        float.IsNaN(a) || a <= -1f ? 0 : a >= 18446744073709551616f ? -1L : (long)(ulong)a;

    public static long I64TruncSatF64S(double a) =>
        double.IsNaN(a) ? 0 : a >= 9223372036854775808.0 ? long.MaxValue : a < -9223372036854775808.0 ? long.MinValue : (long)a;

    public static long I64TruncSatF64U(double a) =>
        double.IsNaN(a) || a <= -1.0 ? 0 : a >= 18446744073709551616.0 ? -1L : (long)(ulong)a;

    public static float F32ConvertI32U(int a) => (float)(double)(uint)a;

    /// <summary>u64 to f32 with one rounding: halve (keeping the sticky bit) when the top bit is set.</summary>
    public static float F32ConvertI64U(long a)
    {
        if (a >= 0)
        {
            return a;
        }

        var half = (long)(((ulong)a >> 1) | ((ulong)a & 1));
        return (float)half * 2f;
    }

    public static double F64ConvertI32U(int a) => (uint)a;

    public static double F64ConvertI64U(long a)
    {
        if (a >= 0)
        {
            return a;
        }

        var half = (long)(((ulong)a >> 1) | ((ulong)a & 1));
        return (double)half * 2.0;
    }

    public static float F32Reinterpret(int a) => BitConverter.Int32BitsToSingle(a);

    public static double F64Reinterpret(long a) => BitConverter.Int64BitsToDouble(a);

    public static int I32Reinterpret(float a) => BitConverter.SingleToInt32Bits(a);

    public static long I64Reinterpret(double a) => BitConverter.DoubleToInt64Bits(a);
    // RyuJIT folds x*1, x/1, x-0, -0-x, demote(promote(x)) and float constants (kept as double internally), which
    // loses the quieting of signalling NaNs that wasm requires. The compiler routes exactly those shapes through these
    // non-inlined helpers, which the JIT cannot see into (wasm-engine-reference.md §2.1, float_exprs.wast).
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static float F32AddOpaque(float a, float b) => a + b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static float F32SubOpaque(float a, float b) => a - b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static float F32MulOpaque(float a, float b) => a * b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static float F32DivOpaque(float a, float b) => a / b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static double F64AddOpaque(double a, double b) => a + b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static double F64SubOpaque(double a, double b) => a - b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static double F64MulOpaque(double a, double b) => a * b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static double F64DivOpaque(double a, double b) => a / b;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static float F32DemoteOpaque(double a) => (float)a;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static float F32FromBitsOpaque(int bits) => BitConverter.Int32BitsToSingle(bits);

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static double F64FromBitsOpaque(long bits) => BitConverter.Int64BitsToDouble(bits);
}
