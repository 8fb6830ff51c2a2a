using System.Diagnostics;
using System.Reflection;
using System.Reflection.Emit;
using Propeller.Wasm.Binary;

namespace Propeller.Wasm.Compilation;

/// <summary>
/// Validates a decoded module and compiles every defined function to a static method of one type in a collectible
/// dynamic assembly (so functions can call each other directly and their addresses can be taken for tables).
/// </summary>
internal static class ModuleCompiler
{
    public static CompiledModule Compile(ModuleInfo info, Config config)
    {
        var clock = Stopwatch.StartNew();
        var declared = ModuleValidator.Validate(info);
        var defined = info.FunctionTypes.Count - info.ImportedFunctionCount;
        if (defined == 0)
        {
            return new CompiledModule(info, [], null, clock.Elapsed);
        }

        var module = Emit.NewModule(info.ModuleName ?? "module", collectible: true);
        var tb = module.DefineType("WasmModule", TypeAttributes.Public | TypeAttributes.Sealed | TypeAttributes.Abstract);
        var methods = new MethodBuilder[defined];
        var names = new string[defined];
        var used = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < defined; i++)
        {
            var index = i + info.ImportedFunctionCount;
            var type = info.FunctionType(index);
            var name = info.FunctionDisplayName(index);
            if (!used.Add(name))
            {
                name = $"{name}#{index}";
                used.Add(name);
            }

            names[i] = name;
            methods[i] = tb.DefineMethod(
                name, MethodAttributes.Public | MethodAttributes.Static, ClrTypes.Return(type), ClrTypes.Parameters(type));
            methods[i].SetImplementationFlags(MethodImplAttributes.AggressiveOptimization);
        }

        var tokens = new HelperTokens(module);
        for (var i = 0; i < defined; i++)
        {
            new FunctionCompiler(info, i + info.ImportedFunctionCount, methods, declared, tokens, methods[i].GetILGenerator())
            {
                Fuel = config.ConsumeFuel,
                Epochs = config.EpochInterruption,
            }.Compile();
        }

        var created = tb.CreateType();
        var pointers = new nint[defined];
        var byName = created.GetMethods(BindingFlags.Public | BindingFlags.Static).ToDictionary(m => m.Name, StringComparer.Ordinal);
        for (var i = 0; i < defined; i++)
        {
            pointers[i] = byName[names[i]].MethodHandle.GetFunctionPointer();
        }

        return new CompiledModule(info, pointers, created, clock.Elapsed);
    }
}
