using Propeller.Wasm.Compilation;

namespace Propeller.Wasm;

/// <summary>
/// A callable function: compiled wasm code of an instance, or a host function. Every function is reached the same way
/// from wasm code: a function pointer called with <see cref="Context"/> as its last argument.
/// </summary>
public sealed class Function
{
    internal readonly object Context;
    internal readonly nint Code;
    internal readonly int TypeId;
    internal readonly HostCallback? Callback;
    internal readonly Delegate? Typed;

    internal Function(Instance owner, FuncType type, nint code, string name)
    {
        Context = owner;
        Owner = owner;
        Type = type;
        TypeId = type.Id;
        Code = code;
        Name = name;
    }

    private Function(FuncType type, HostCallback? callback, Delegate? typed, string name)
    {
        Context = this;
        Type = type;
        TypeId = type.Id;
        Callback = callback;
        Typed = typed;
        Name = name;
        Code = typed is null ? Stubs.UntypedTrampoline(type) : Stubs.TypedTrampoline(type, typed.GetType());
    }

    public FuncType Type { get; }

    /// <summary>The function's name: from the name section or export for wasm functions, as given for host functions.</summary>
    public string Name { get; }

    /// <summary>The instance that defines this function; null for host functions.</summary>
    public Instance? Owner { get; }

    public bool IsHost => Owner is null;

    /// <summary>Creates a host function with the untyped calling convention.</summary>
    public static Function FromCallback(FuncType type, HostCallback callback, string name = "host")
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(callback);
        return new Function(type, callback, null, name);
    }

    /// <summary>
    /// Creates a host function from a typed delegate. Parameters and the return value may be int/uint (i32), long/ulong (i64),
    /// float, double, Function (funcref) or object (externref); an optional first parameter of type <see cref="Caller"/>
    /// receives the caller. Multiple results need the untyped form.
    /// </summary>
    public static Function FromDelegate(Delegate callback, string name = "host")
    {
        ArgumentNullException.ThrowIfNull(callback);
        var invoke = callback.GetType().GetMethod("Invoke")!;
        var parameters = invoke.GetParameters().Select(p => p.ParameterType).ToList();
        if (parameters.Count > 0 && parameters[0] == typeof(Caller))
        {
            parameters.RemoveAt(0);
        }

        var results = invoke.ReturnType == typeof(void) ? [] : new[] { KindOf(invoke.ReturnType) };
        var type = new FuncType([.. parameters.Select(KindOf)], results);
        return new Function(type, null, callback, name);
    }

    /// <summary>Calls the function with untyped values; traps surface as <see cref="TrapException"/>.</summary>
    public Value[] Call(params Value[] arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        if (arguments.Length != Type.Parameters.Count)
        {
            throw new WasmException($"function {Name} expects {Type.Parameters.Count} arguments, got {arguments.Length}");
        }

        for (var i = 0; i < arguments.Length; i++)
        {
            if (arguments[i].Kind != Type.Parameters[i])
            {
                throw new WasmException(
                    $"argument {i} of function {Name} must be {FuncType.Name(Type.Parameters[i])}, got {FuncType.Name(arguments[i].Kind)}");
            }
        }

        var results = new Value[Type.Results.Count];
        var invoker = Stubs.InvokerFor(Type);
        if (Owner is null)
        {
            invoker(Code, Context, arguments, results);
            return results;
        }

        var store = Owner.Store;
        store.Thread.Run(() =>
        {
            // A host function may call back into wasm; restoring the caller afterwards keeps its Caller view correct.
            var state = store.State;
            var depth = state.Depth;
            var caller = state.CallerInstance;
            try
            {
                invoker(Code, Context, arguments, results);
            }
            finally
            {
                state.Depth = depth;
                state.CallerInstance = caller;
            }
        });
        return results;
    }

    /// <summary>Calls with CLR values (int, long, float, double, Function, object); returns null, one value, or an object[].</summary>
    public object? Invoke(params object?[] arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        if (arguments.Length != Type.Parameters.Count)
        {
            throw new WasmException($"function {Name} expects {Type.Parameters.Count} arguments, got {arguments.Length}");
        }

        var values = new Value[arguments.Length];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = Value.FromObject(Type.Parameters[i], arguments[i]);
        }

        var results = Call(values);
        return results.Length switch
        {
            0 => null,
            1 => results[0].ToObject(),
            _ => results.Select(r => r.ToObject()).ToArray(),
        };
    }

    public override string ToString() => $"{Name}: {Type}";

    private static ValueKind KindOf(Type type)
    {
        if (type == typeof(int) || type == typeof(uint))
        {
            return ValueKind.I32;
        }

        if (type == typeof(long) || type == typeof(ulong))
        {
            return ValueKind.I64;
        }

        if (type == typeof(float))
        {
            return ValueKind.F32;
        }

        if (type == typeof(double))
        {
            return ValueKind.F64;
        }

        if (type == typeof(Function))
        {
            return ValueKind.FuncRef;
        }

        if (type == typeof(object))
        {
            return ValueKind.ExternRef;
        }

        throw new WasmException($"type {type.Name} cannot cross the wasm boundary; use int, long, float, double, Function or object");
    }
}
