using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace Propeller.Wasm.Compilation;

/// <summary>Shared Reflection.Emit plumbing: dynamic assemblies that may see our internals, and method lookups.</summary>
internal static class Emit
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(Type, string), MethodInfo> Methods = new();
    private static int s_assemblyCounter;

    public static ModuleBuilder NewModule(string purpose, bool collectible)
    {
        var name = new AssemblyName($"wasm:{purpose}:{Interlocked.Increment(ref s_assemblyCounter)}");
        var assembly = AssemblyBuilder.DefineDynamicAssembly(
            name, collectible ? AssemblyBuilderAccess.RunAndCollect : AssemblyBuilderAccess.Run);
        var ctor = typeof(IgnoresAccessChecksToAttribute).GetConstructor([typeof(string)])!;
        assembly.SetCustomAttribute(new CustomAttributeBuilder(ctor, [typeof(Emit).Assembly.GetName().Name!]));
        return assembly.DefineDynamicModule(name.Name!);
    }

    /// <summary>Looks a helper up by name once; code generation asks for the same few helpers over and over.</summary>
    public static MethodInfo Method(Type type, string name) => Methods.GetOrAdd((type, name), static key =>
        key.Item1.GetMethod(key.Item2, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance)
        ?? throw new InvalidOperationException($"{key.Item1.Name}.{key.Item2} not found"));

    public static FieldInfo Field(Type type, string name) =>
        type.GetField(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance)
        ?? throw new InvalidOperationException($"{type.Name}.{name} not found");

    public static void LoadInt(ILGenerator il, int value)
    {
        switch (value)
        {
            case -1:
                il.Emit(OpCodes.Ldc_I4_M1);
                break;
            case >= 0 and <= 8:
                il.Emit(value switch
                {
                    0 => OpCodes.Ldc_I4_0,
                    1 => OpCodes.Ldc_I4_1,
                    2 => OpCodes.Ldc_I4_2,
                    3 => OpCodes.Ldc_I4_3,
                    4 => OpCodes.Ldc_I4_4,
                    5 => OpCodes.Ldc_I4_5,
                    6 => OpCodes.Ldc_I4_6,
                    7 => OpCodes.Ldc_I4_7,
                    _ => OpCodes.Ldc_I4_8,
                });
                break;
            case >= -128 and <= 127:
                il.Emit(OpCodes.Ldc_I4_S, (sbyte)value);
                break;
            default:
                il.Emit(OpCodes.Ldc_I4, value);
                break;
        }
    }

    public static void LoadArg(ILGenerator il, int index)
    {
        switch (index)
        {
            case 0:
                il.Emit(OpCodes.Ldarg_0);
                break;
            case 1:
                il.Emit(OpCodes.Ldarg_1);
                break;
            case 2:
                il.Emit(OpCodes.Ldarg_2);
                break;
            case 3:
                il.Emit(OpCodes.Ldarg_3);
                break;
            case <= 255:
                il.Emit(OpCodes.Ldarg_S, (byte)index);
                break;
            default:
                il.Emit(OpCodes.Ldarg, (short)index);
                break;
        }
    }

    public static void StoreIndirect(ILGenerator il, Type type)
    {
        if (type == typeof(int))
        {
            il.Emit(OpCodes.Stind_I4);
        }
        else if (type == typeof(long))
        {
            il.Emit(OpCodes.Stind_I8);
        }
        else if (type == typeof(float))
        {
            il.Emit(OpCodes.Stind_R4);
        }
        else if (type == typeof(double))
        {
            il.Emit(OpCodes.Stind_R8);
        }
        else
        {
            il.Emit(OpCodes.Stind_Ref);
        }
    }

    public static string Suffix(ValueKind kind) => kind switch
    {
        ValueKind.I32 => "I32",
        ValueKind.I64 => "I64",
        ValueKind.F32 => "F32",
        ValueKind.F64 => "F64",
        ValueKind.FuncRef => "FuncRef",
        _ => "ExternRef",
    };

    public static string UnboxSuffix(ValueKind kind) => kind is ValueKind.FuncRef or ValueKind.ExternRef ? "Ref" : Suffix(kind);
}
