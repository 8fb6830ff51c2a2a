using System.Globalization;
using System.Text;
using Propeller.Wasm.Wasi;

namespace Propeller.Wasm.Hosting;

/// <summary>
/// `propeller-wasm [OPTIONS] FILE.wasm [ARGS...]`, shaped like `wasmtime run`: runs `_start` as a WASI program with ARGS as
/// argv and exits with the guest's exit code, or calls `--invoke NAME` with ARGS as typed values and prints the results.
/// A trap exits with 134 and "error: wasm trap: KIND: message" on stderr; bad arguments exit with 2.
/// Shared by propeller-wasm and `propeller-proplet run`; the program argument names the command in the usage text.
/// </summary>
public static class RunCommand
{
    /// <summary>The option lines of the usage text, after "usage: PROGRAM ".</summary>
    public const string OptionsUsage =
        "[--invoke NAME] [--dir HOST::GUEST]... [--env K=V]... [--fuel N] [--timeout SECONDS]\n"
        + "        [--max-memory MIB] [--max-call-depth N] FILE.wasm [ARGS...]";

    public static int Run(
        string program,
        string[] args,
        TextWriter stdout,
        TextWriter stderr,
        Stream? guestStdout = null,
        Stream? guestStderr = null,
        Stream? guestStdin = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        var usage = $"usage: {program} {OptionsUsage}";
        var options = new Options();
        var i = 0;
        try
        {
            for (; i < args.Length && args[i].StartsWith("--", StringComparison.Ordinal); i++)
            {
                if (args[i] == "--")
                {
                    i++;
                    break;
                }

                if (i + 1 >= args.Length)
                {
                    throw new FormatException($"{args[i]} needs a value");
                }

                options.Set(args[i], args[++i]);
            }
        }
        catch (FormatException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            stderr.WriteLine(usage);
            return 2;
        }

        if (i >= args.Length)
        {
            stderr.WriteLine(usage);
            return 2;
        }

        var file = args[i];
        var rest = args[(i + 1)..];
        var captureOut = guestStdout is null ? new MemoryStream() : null;
        var captureErr = guestStderr is null ? new MemoryStream() : null;
        try
        {
            var config = new Config().WithConsumeFuel(options.Fuel is not null).WithEpochInterruption(options.Timeout is not null);
            using var engine = new Engine(config);
            using var store = new Store(engine);
            if (options.Fuel is { } fuel)
            {
                store.SetFuel(fuel);
            }

            if (options.MaxMemoryMib is { } mib)
            {
                store.SetLimits(new StoreLimits { MemorySize = mib << 20 });
            }

            if (options.MaxCallDepth is { } depth)
            {
                store.SetMaxCallDepth(depth);
            }

            var module = Module.FromFile(engine, file);
            var wasi = new WasiConfiguration()
                .WithArgs([Path.GetFileName(file), .. options.Invoke is null ? rest : []])
                .WithStandardOutput(guestStdout ?? captureOut!)
                .WithStandardError(guestStderr ?? captureErr!)
                .WithStandardInput(guestStdin ?? new MemoryStream([]));
            foreach (var (name, value) in options.Env)
            {
                wasi.WithEnvironmentVariable(name, value);
            }

            foreach (var (host, guest) in options.Dirs)
            {
                wasi.WithPreopenedDirectory(host, guest);
            }

            var context = new WasiContext(wasi);
            var linker = new Linker(engine);
            context.DefineIn(linker);
            using var timer = options.Timeout is { } seconds
                ? new Timer(_ => store.Interrupt(), null, TimeSpan.FromSeconds(seconds), Timeout.InfiniteTimeSpan)
                : null;
            var instance = linker.Instantiate(store, module);
            if (options.Invoke is null)
            {
                if (instance.GetFunction("_start") is not { } start || start.Type.Parameters.Count != 0 || start.Type.Results.Count != 0)
                {
                    stderr.WriteLine($"error: {file} has no exported function '_start' of type [] -> []");
                    return 1;
                }

                return context.RunStart(instance);
            }

            var function = instance.GetFunction(options.Invoke);
            if (function is null)
            {
                stderr.WriteLine($"error: {file} has no exported function '{options.Invoke}'");
                return 1;
            }

            if (rest.Length != function.Type.Parameters.Count)
            {
                stderr.WriteLine($"error: {options.Invoke} takes {function.Type.Parameters.Count} arguments, got {rest.Length}");
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
        catch (WasiExitException exit)
        {
            return exit.ExitCode;
        }
        catch (TrapException trap)
        {
            stderr.WriteLine($"error: wasm trap: {trap.Code}: {trap.Message}");
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
        finally
        {
            if (captureOut is not null)
            {
                stdout.Write(Encoding.UTF8.GetString(captureOut.ToArray()));
            }

            if (captureErr is not null)
            {
                stderr.Write(Encoding.UTF8.GetString(captureErr.ToArray()));
            }
        }
    }

    private sealed class Options
    {
        public string? Invoke { get; private set; }

        public List<(string Host, string Guest)> Dirs { get; } = [];

        public List<(string Name, string Value)> Env { get; } = [];

        public long? Fuel { get; private set; }

        public double? Timeout { get; private set; }

        public long? MaxMemoryMib { get; private set; }

        public int? MaxCallDepth { get; private set; }

        public void Set(string option, string value)
        {
            switch (option)
            {
                case "--invoke":
                    Invoke = value;
                    break;
                case "--dir":
                    {
                        var split = value.IndexOf("::", StringComparison.Ordinal);
                        Dirs.Add(split < 0 ? (value, value) : (value[..split], value[(split + 2)..]));
                        if (Dirs[^1].Host.Length == 0 || Dirs[^1].Guest.Length == 0)
                        {
                            throw new FormatException($"--dir {value}: expected HOST::GUEST");
                        }

                        break;
                    }

                case "--env":
                    {
                        var split = value.IndexOf('=', StringComparison.Ordinal);
                        if (split <= 0)
                        {
                            throw new FormatException($"--env {value}: expected NAME=VALUE");
                        }

                        Env.Add((value[..split], value[(split + 1)..]));
                        break;
                    }

                case "--fuel":
                    Fuel = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var fuel)
                        ? fuel
                        : throw new FormatException($"--fuel {value}: expected a non-negative integer");
                    break;
                case "--timeout":
                    Timeout = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
                              && seconds > 0 && seconds < 1e7
                        ? seconds
                        : throw new FormatException($"--timeout {value}: expected a positive number of seconds");
                    break;
                case "--max-memory":
                    MaxMemoryMib = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var mib) && mib < 1L << 20
                        ? mib
                        : throw new FormatException($"--max-memory {value}: expected a size in MiB");
                    break;
                case "--max-call-depth":
                    MaxCallDepth = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var depth) && depth > 0
                        ? depth
                        : throw new FormatException($"--max-call-depth {value}: expected a positive integer");
                    break;
                default:
                    throw new FormatException($"unknown option {option}");
            }
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
