using System.Text.Json;

namespace Propeller.Wasm.Cli;

/// <summary>One wast2json file run in its own store, with the spec's `spectest` host module.</summary>
internal sealed class SpecFile(Engine engine, string directory, TextWriter log)
{
    private readonly Dictionary<string, Instance> _named = new(StringComparer.Ordinal);
    private Instance? _current;
    private Linker _linker = null!;
    private Store _store = null!;
    private string _name = string.Empty;
    private int _shown;

    public int Passed { get; private set; }

    public int Failed { get; private set; }

    public int Skipped { get; private set; }

    public SpecFile Run(string file)
    {
        _name = Path.GetFileNameWithoutExtension(file);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
        using var store = new Store(engine);
        _store = store;
        _linker = new Linker(engine) { AllowShadowing = true };
        DefineSpectest();

        // All commands run on the store's guest thread, so wasm calls are inline instead of a thread hand-off each.
        store.Run(() => RunCommands(doc.RootElement.GetProperty("commands")));
        return this;
    }

    private void RunCommands(JsonElement commands)
    {
        foreach (var command in commands.EnumerateArray())
        {
            var line = command.TryGetProperty("line", out var l) ? l.GetInt32() : 0;
            string? error;
            try
            {
                error = Execute(command);
            }
#pragma warning disable CA1031 // A harness records any failure of the engine as a failed command and keeps going.
            catch (Exception e)
#pragma warning restore CA1031
            {
                error = $"unexpected {e.GetType().Name}: {e.Message}";
            }

            if (error is null)
            {
                Passed++;
            }
            else if (error == "skip")
            {
                Skipped++;
            }
            else
            {
                Failed++;
                if (_shown++ < SpecTestRunner.MaxFailuresShown)
                {
                    log.WriteLine($"  {_name}.wast:{line}: {command.GetProperty("type").GetString()}: {error}");
                }
            }
        }
    }

    private string? Execute(JsonElement command)
    {
        switch (command.GetProperty("type").GetString())
        {
            case "module":
                {
                    var instance = Instantiate(command.GetProperty("filename").GetString()!);
                    _current = instance;
                    if (command.TryGetProperty("name", out var name))
                    {
                        _named[name.GetString()!] = instance;
                    }

                    return null;
                }

            case "register":
                {
                    var instance = command.TryGetProperty("name", out var name) ? _named[name.GetString()!] : _current!;
                    _linker.DefineInstance(command.GetProperty("as").GetString()!, instance);
                    return null;
                }

            case "action":
                Perform(command.GetProperty("action"));
                return null;
            case "assert_return":
                {
                    var results = Perform(command.GetProperty("action"));
                    var expected = command.GetProperty("expected").EnumerateArray().ToList();
                    if (expected.Count != results.Length)
                    {
                        return $"expected {expected.Count} results, got {results.Length}";
                    }

                    for (var i = 0; i < results.Length; i++)
                    {
                        if (!SpecTestRunner.Matches(expected[i], results[i]))
                        {
                            return $"result {i}: expected {expected[i]}, got {results[i]}";
                        }
                    }

                    return null;
                }

            case "assert_trap":
            case "assert_exhaustion":
                {
                    var text = command.GetProperty("text").GetString()!;
                    try
                    {
                        Perform(command.GetProperty("action"));
                        return $"expected trap \"{text}\", got a result";
                    }
                    catch (TrapException trap)
                    {
                        return trap.Text.StartsWith(text, StringComparison.Ordinal) || text.StartsWith(trap.Text, StringComparison.Ordinal)
                            ? null
                            : $"expected trap \"{text}\", got \"{trap.Text}\"";
                    }
                }

            case "assert_invalid":
            case "assert_malformed":
                {
                    if (command.GetProperty("module_type").GetString() != "binary")
                    {
                        return "skip";
                    }

                    try
                    {
                        Module.FromFile(engine, Path.Combine(directory, command.GetProperty("filename").GetString()!));
                        return $"expected module error \"{command.GetProperty("text").GetString()}\", but it was accepted";
                    }
                    catch (ModuleException)
                    {
                        return null;
                    }
                }

            case "assert_unlinkable":
                try
                {
                    Instantiate(command.GetProperty("filename").GetString()!);
                    return "expected a link error";
                }
                catch (LinkException)
                {
                    return null;
                }

            case "assert_uninstantiable":
                try
                {
                    Instantiate(command.GetProperty("filename").GetString()!);
                    return "expected a trap during instantiation";
                }
                catch (TrapException)
                {
                    return null;
                }

            default:
                return "skip";
        }
    }

    private Instance Instantiate(string filename)
    {
        var module = Module.FromFile(engine, Path.Combine(directory, filename));
        return _linker.Instantiate(_store, module);
    }

    private Value[] Perform(JsonElement action)
    {
        var instance = action.TryGetProperty("module", out var m) ? _named[m.GetString()!] : _current!;
        var field = action.GetProperty("field").GetString()!;
        if (action.GetProperty("type").GetString() == "get")
        {
            return [instance.GetGlobal(field)!.Value];
        }

        var function = instance.GetFunction(field) ?? throw new WasmException($"no exported function {field}");
        var args = action.GetProperty("args").EnumerateArray().Select(SpecTestRunner.ParseArgument).ToArray();
        return function.Call(args);
    }

    private void DefineSpectest()
    {
        static void Nothing(Caller caller, ReadOnlySpan<Value> arguments, Span<Value> results)
        {
        }

        void Print(string name, params ValueKind[] parameters) =>
            _linker.DefineFunction("spectest", name, new FuncType(parameters, []), Nothing);

        Print("print");
        Print("print_i32", ValueKind.I32);
        Print("print_i64", ValueKind.I64);
        Print("print_f32", ValueKind.F32);
        Print("print_f64", ValueKind.F64);
        Print("print_i32_f32", ValueKind.I32, ValueKind.F32);
        Print("print_f64_f64", ValueKind.F64, ValueKind.F64);
        _linker.Define("spectest", "global_i32", new Global(_store, ValueKind.I32, false, Value.I32(666)));
        _linker.Define("spectest", "global_i64", new Global(_store, ValueKind.I64, false, Value.I64(666)));
        _linker.Define("spectest", "global_f32", new Global(_store, ValueKind.F32, false, Value.F32(666.6f)));
        _linker.Define("spectest", "global_f64", new Global(_store, ValueKind.F64, false, Value.F64(666.6)));
        _linker.Define("spectest", "table", new Table(_store, ValueKind.FuncRef, 10, 20));
        _linker.Define("spectest", "memory", new Memory(_store, 1, 2));
    }
}
