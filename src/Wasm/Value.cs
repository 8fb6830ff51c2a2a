namespace Propeller.Wasm;

/// <summary>
/// An untyped wasm value for host calls. Floats are kept as raw bits so NaN payloads survive the host boundary.
/// </summary>
public readonly struct Value : IEquatable<Value>
{
    private Value(ValueKind kind, long bits, object? reference)
    {
        Kind = kind;
        Bits = bits;
        Reference = reference;
    }

    public ValueKind Kind { get; }

    /// <summary>The bit pattern of a numeric value (i32 and f32 in the low 32 bits).</summary>
    public long Bits { get; }

    /// <summary>The referenced object of a funcref (<see cref="Function"/>) or externref (any host object); null for null.</summary>
    public object? Reference { get; }

    public int AsI32 => (int)Bits;

    public long AsI64 => Bits;

    public float AsF32 => BitConverter.Int32BitsToSingle((int)Bits);

    public double AsF64 => BitConverter.Int64BitsToDouble(Bits);

    public static Value I32(int value) => new(ValueKind.I32, (uint)value, null);

    public static Value I64(long value) => new(ValueKind.I64, value, null);

    public static Value F32(float value) => new(ValueKind.F32, (uint)BitConverter.SingleToInt32Bits(value), null);

    public static Value F32Bits(int bits) => new(ValueKind.F32, (uint)bits, null);

    public static Value F64(double value) => new(ValueKind.F64, BitConverter.DoubleToInt64Bits(value), null);

    public static Value F64Bits(long bits) => new(ValueKind.F64, bits, null);

    public static Value FuncRef(Function? function) => new(ValueKind.FuncRef, 0, function);

    public static Value ExternRef(object? value) => new(ValueKind.ExternRef, 0, value);

    /// <summary>The default (zero or null) value of a type.</summary>
    public static Value Default(ValueKind kind) => new(kind, 0, null);

    internal static Value FromBits(ValueKind kind, long bits, object? reference) => new(kind, bits, reference);

    /// <summary>Converts a CLR value (int, long, float, double, Function, any object for externref) to a value of <paramref name="kind"/>.</summary>
    public static Value FromObject(ValueKind kind, object? value) => kind switch
    {
        ValueKind.I32 => I32(Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture)),
        ValueKind.I64 => I64(Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)),
        ValueKind.F32 => F32(Convert.ToSingle(value, System.Globalization.CultureInfo.InvariantCulture)),
        ValueKind.F64 => F64(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)),
        ValueKind.FuncRef => FuncRef((Function?)value),
        ValueKind.ExternRef => ExternRef(value),
        _ => throw new WasmException($"values of type {FuncType.Name(kind)} are not supported"),
    };

    /// <summary>The value as a CLR object: int, long, float, double, or the reference.</summary>
    public object? ToObject() => Kind switch
    {
        ValueKind.I32 => AsI32,
        ValueKind.I64 => AsI64,
        ValueKind.F32 => AsF32,
        ValueKind.F64 => AsF64,
        _ => Reference,
    };

    public bool Equals(Value other) =>
        Kind == other.Kind && Bits == other.Bits && Equals(Reference, other.Reference);

    public override bool Equals(object? obj) => obj is Value other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Kind, Bits, Reference);

    public override string ToString() => Kind switch
    {
        ValueKind.I32 => $"i32:{AsI32}",
        ValueKind.I64 => $"i64:{AsI64}",
        ValueKind.F32 => $"f32:{AsF32:R}",
        ValueKind.F64 => $"f64:{AsF64:R}",
        _ => $"{FuncType.Name(Kind)}:{Reference?.ToString() ?? "null"}",
    };

    public static bool operator ==(Value left, Value right) => left.Equals(right);

    public static bool operator !=(Value left, Value right) => !left.Equals(right);
}
