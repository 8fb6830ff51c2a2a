using System.Collections.Concurrent;
using System.Reflection;
using System.Reflection.Emit;
using Propeller.Wasm.Runtime;

namespace Propeller.Wasm.Compilation;

/// <summary>Calls host to wasm with untyped values.</summary>
internal delegate void Invoker(nint code, object context, Value[] arguments, Value[] results);

/// <summary>
/// Generated glue, cached per signature: invokers (host to wasm, untyped values in and out) and host trampolines
/// (wasm to host, with the compiled-function signature so wasm code calls every function the same way, through calli).
/// </summary>
internal static class Stubs
{
    private static readonly ConcurrentDictionary<string, Invoker> Invokers = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, nint> Trampolines = new(StringComparer.Ordinal);
    private static readonly ConcurrentBag<Type> KeepAlive = [];
    private static readonly Lock EmitLock = new();

    public static Invoker InvokerFor(FuncType type) => Invokers.GetOrAdd(type.Signature, _ => BuildInvoker(type));

    public static nint UntypedTrampoline(FuncType type) =>
        Trampolines.GetOrAdd("u:" + type.Signature, _ => BuildTrampoline(type, null));

    public static nint TypedTrampoline(FuncType type, Type delegateType) =>
        Trampolines.GetOrAdd("t:" + type.Signature + ":" + delegateType.AssemblyQualifiedName, _ => BuildTrampoline(type, delegateType));

    private static Invoker BuildInvoker(FuncType type)
    {
        var dm = new DynamicMethod(
            "invoke " + type.Signature, typeof(void), [typeof(nint), typeof(object), typeof(Value[]), typeof(Value[])],
            typeof(Stubs).Module, skipVisibility: true);
        var il = dm.GetILGenerator();
        for (var i = 0; i < type.Parameters.Count; i++)
        {
            il.Emit(OpCodes.Ldarg_2);
            Emit.LoadInt(il, i);
            il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), "Unbox" + Emit.UnboxSuffix(type.Parameters[i])));
        }

        var extra = new LocalBuilder[type.Results.Count];
        for (var j = 1; j < type.Results.Count; j++)
        {
            extra[j] = il.DeclareLocal(ClrTypes.Of(type.Results[j]));
            il.Emit(OpCodes.Ldloca, extra[j]);
        }

        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Ldarg_0);
        il.EmitCalli(OpCodes.Calli, CallingConventions.Standard, ClrTypes.Return(type), ClrTypes.Parameters(type), null);
        if (type.Results.Count > 0)
        {
            extra[0] = il.DeclareLocal(ClrTypes.Of(type.Results[0]));
            il.Emit(OpCodes.Stloc, extra[0]);
        }

        for (var j = 0; j < type.Results.Count; j++)
        {
            il.Emit(OpCodes.Ldarg_3);
            Emit.LoadInt(il, j);
            il.Emit(OpCodes.Ldloc, extra[j]);
            il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), "Box" + Emit.Suffix(type.Results[j])));
            il.Emit(OpCodes.Stelem, typeof(Value));
        }

        il.Emit(OpCodes.Ret);
        return dm.CreateDelegate<Invoker>();
    }

    private static nint BuildTrampoline(FuncType type, Type? delegateType)
    {
        lock (EmitLock)
        {
            var module = Emit.NewModule("host", collectible: false);
            var tb = module.DefineType("HostTrampoline", TypeAttributes.Public | TypeAttributes.Sealed | TypeAttributes.Abstract);
            var mb = tb.DefineMethod(
                "host", MethodAttributes.Public | MethodAttributes.Static, ClrTypes.Return(type), ClrTypes.Parameters(type));
            var il = mb.GetILGenerator();
            var ctx = ClrTypes.ContextArgument(type);
            if (delegateType is null)
            {
                EmitUntypedBody(il, type, ctx);
            }
            else
            {
                EmitTypedBody(il, type, ctx, delegateType);
            }

            var created = tb.CreateType();
            KeepAlive.Add(created);
            return created.GetMethod("host")!.MethodHandle.GetFunctionPointer();
        }
    }

    private static void EmitUntypedBody(ILGenerator il, FuncType type, int ctx)
    {
        Emit.LoadInt(il, type.Parameters.Count);
        il.Emit(OpCodes.Newarr, typeof(Value));
        for (var i = 0; i < type.Parameters.Count; i++)
        {
            il.Emit(OpCodes.Dup);
            Emit.LoadInt(il, i);
            Emit.LoadArg(il, i);
            il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), "Box" + Emit.Suffix(type.Parameters[i])));
            il.Emit(OpCodes.Stelem, typeof(Value));
        }

        Emit.LoadArg(il, ctx);
        il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), nameof(HostEntry.InvokeUntyped)));
        var results = il.DeclareLocal(typeof(Value[]));
        il.Emit(OpCodes.Stloc, results);
        for (var j = 1; j < type.Results.Count; j++)
        {
            Emit.LoadArg(il, type.Parameters.Count + j - 1);
            il.Emit(OpCodes.Ldloc, results);
            Emit.LoadInt(il, j);
            il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), "Unbox" + Emit.UnboxSuffix(type.Results[j])));
            Emit.StoreIndirect(il, ClrTypes.Of(type.Results[j]));
        }

        if (type.Results.Count > 0)
        {
            il.Emit(OpCodes.Ldloc, results);
            il.Emit(OpCodes.Ldc_I4_0);
            il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), "Unbox" + Emit.UnboxSuffix(type.Results[0])));
        }

        il.Emit(OpCodes.Ret);
    }

    private static void EmitTypedBody(ILGenerator il, FuncType type, int ctx, Type delegateType)
    {
        var invoke = delegateType.GetMethod("Invoke")!;
        var parameters = invoke.GetParameters();
        Emit.LoadArg(il, ctx);
        il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), nameof(HostEntry.TypedDelegate)));
        il.Emit(OpCodes.Castclass, delegateType);
        var first = 0;
        if (parameters.Length > 0 && parameters[0].ParameterType == typeof(Caller))
        {
            il.Emit(OpCodes.Call, Emit.Method(typeof(HostEntry), nameof(HostEntry.CurrentCaller)));
            first = 1;
        }

        for (var i = first; i < parameters.Length; i++)
        {
            Emit.LoadArg(il, i - first);
            var pt = parameters[i].ParameterType;
            if (pt != typeof(object) && !pt.IsValueType)
            {
                il.Emit(OpCodes.Castclass, pt);
            }
        }

        il.Emit(OpCodes.Callvirt, invoke);
        il.Emit(OpCodes.Ret);
    }
}
