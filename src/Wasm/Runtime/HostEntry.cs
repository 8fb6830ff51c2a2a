namespace Propeller.Wasm.Runtime;

/// <summary>Conversions between <see cref="Value"/> and CLR values used by the generated invokers and host trampolines.</summary>
internal static class HostEntry
{
    public static Value BoxI32(int value) => Value.I32(value);

    public static Value BoxI64(long value) => Value.I64(value);

    public static Value BoxF32(float value) => Value.F32(value);

    public static Value BoxF64(double value) => Value.F64(value);

    public static Value BoxFuncRef(object? value) => Value.FuncRef((Function?)value);

    public static Value BoxExternRef(object? value) => Value.ExternRef(value);

    public static int UnboxI32(Value[] values, int index) => values[index].AsI32;

    public static long UnboxI64(Value[] values, int index) => values[index].AsI64;

    public static float UnboxF32(Value[] values, int index) => values[index].AsF32;

    public static double UnboxF64(Value[] values, int index) => values[index].AsF64;

    public static object? UnboxRef(Value[] values, int index) => values[index].Reference;

    public static Caller CurrentCaller() => ExecutionState.Current?.Caller ?? new Caller(null);

    public static Value[] InvokeUntyped(Value[] arguments, object context)
    {
        var function = (Function)context;
        var results = new Value[function.Type.Results.Count];
        for (var i = 0; i < results.Length; i++)
        {
            results[i] = Value.Default(function.Type.Results[i]);
        }

        function.Callback!(CurrentCaller(), arguments, results);
        for (var i = 0; i < results.Length; i++)
        {
            if (results[i].Kind != function.Type.Results[i])
            {
                throw new WasmException(
                    $"host function {function.Name} returned {FuncType.Name(results[i].Kind)} for a {FuncType.Name(function.Type.Results[i])} result");
            }
        }

        return results;
    }

    public static object? TypedDelegate(object context) => ((Function)context).Typed;
}
