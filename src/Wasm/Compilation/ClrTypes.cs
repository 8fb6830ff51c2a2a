namespace Propeller.Wasm.Compilation;

/// <summary>
/// How wasm values and signatures map to the CLR: i32/i64/f32/f64 are int/long/float/double, references are object.
/// A compiled function is static: (params..., ref result1..resultN-1, object context) returning result0 (or void).
/// </summary>
internal static class ClrTypes
{
    public static Type Of(ValueKind kind) => kind switch
    {
        ValueKind.I32 => typeof(int),
        ValueKind.I64 => typeof(long),
        ValueKind.F32 => typeof(float),
        ValueKind.F64 => typeof(double),
        ValueKind.FuncRef or ValueKind.ExternRef => typeof(object),
        _ => throw new ModuleException(ModuleErrorKind.Unsupported, $"value type {FuncType.Name(kind)} is not supported yet", 0),
    };

    public static Type Return(FuncType type) => type.Results.Count == 0 ? typeof(void) : Of(type.Results[0]);

    public static Type[] Parameters(FuncType type)
    {
        var list = new List<Type>(type.Parameters.Count + type.Results.Count);
        foreach (var p in type.Parameters)
        {
            list.Add(Of(p));
        }

        for (var i = 1; i < type.Results.Count; i++)
        {
            list.Add(Of(type.Results[i]).MakeByRefType());
        }

        list.Add(typeof(object));
        return [.. list];
    }

    /// <summary>Argument index of the context (the owning Instance, or the Function for host trampolines).</summary>
    public static int ContextArgument(FuncType type) => type.Parameters.Count + Math.Max(type.Results.Count - 1, 0);
}
