using System.Globalization;

namespace Propeller.Wasm.Cli;

/// <summary>`propeller-wasm [--invoke NAME] FILE.wasm [ARGS...]`: exit 0, or 134 with the trap message (as wasmtime does).</summary>
internal static class RunCommand
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        string? invoke = null;
        var i = 0;
        if (args.Length >= 2 && args[0] == "--invoke")
        {
            invoke = args[1];
            i = 2;
        }

        if (i >= args.Length)
        {
            stderr.WriteLine("usage: propeller-wasm [--invoke NAME] FILE.wasm [ARGS...]\n       propeller-wasm spectest DIR [--known-failing FILE]");
            return 2;
        }

        var file = args[i];
        var rest = args[(i + 1)..];
        try
        {
            using var engine = new Engine();
            using var store = new Store(engine);
            var module = Module.FromFile(engine, file);
            var instance = new Linker(engine).Instantiate(store, module);
            var name = invoke ?? "_start";
            var function = instance.GetFunction(name);
            if (function is null)
            {
                stderr.WriteLine($"error: {file} has no exported function '{name}'");
                return 1;
            }

            if (rest.Length != function.Type.Parameters.Count)
            {
                stderr.WriteLine($"error: {name} takes {function.Type.Parameters.Count} arguments, got {rest.Length}");
                return 1;
            }

            var values = new Value[rest.Length];
            for (var a = 0; a < rest.Length; a++)
            {
                values[a] = Parse(function.Type.Parameters[a], rest[a]);
            }

            foreach (var result in function.Call(values))
            {
                stdout.WriteLine(Format(result));
            }

            return 0;
        }
        catch (TrapException trap)
        {
            stderr.WriteLine($"error: wasm trap: {trap.Message}");
            return 134;
        }
        catch (WasmException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static Value Parse(ValueKind kind, string text) => kind switch
    {
        ValueKind.I32 => Value.I32(text.StartsWith('-') ? int.Parse(text, CultureInfo.InvariantCulture) : (int)uint.Parse(text, CultureInfo.InvariantCulture)),
        ValueKind.I64 => Value.I64(text.StartsWith('-') ? long.Parse(text, CultureInfo.InvariantCulture) : (long)ulong.Parse(text, CultureInfo.InvariantCulture)),
        ValueKind.F32 => Value.F32(float.Parse(text, CultureInfo.InvariantCulture)),
        ValueKind.F64 => Value.F64(double.Parse(text, CultureInfo.InvariantCulture)),
        _ => throw new FormatException($"cannot pass a {kind} argument from the command line"),
    };

    private static string Format(Value value) => value.Kind switch
    {
        ValueKind.I32 => value.AsI32.ToString(CultureInfo.InvariantCulture),
        ValueKind.I64 => value.AsI64.ToString(CultureInfo.InvariantCulture),
        ValueKind.F32 => value.AsF32.ToString("R", CultureInfo.InvariantCulture),
        ValueKind.F64 => value.AsF64.ToString("R", CultureInfo.InvariantCulture),
        _ => value.Reference is null ? "null" : value.Reference.ToString() ?? "ref",
    };
}
