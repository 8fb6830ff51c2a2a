using System.Diagnostics;
using System.Globalization;
using System.Text;
using Propeller.WasmHost;
using Propeller.WasmHost.Components;
using Wasmtime;

namespace Propeller.Edge.Execution;

/// <summary>
/// `propeller-proplet run [OPTIONS] FILE.wasm [ARGS...]`, shaped like `wasmtime run` and running on Wasmtime: runs
/// `_start` as a WASI program with ARGS as argv and exits with the guest's exit code, or calls `--invoke NAME` with ARGS
/// as typed values and prints the results. A trap exits with 134 and "error: wasm trap: KIND: message" on stderr, an
/// exceeded --timeout with 124; bad arguments (a --dir that cannot be opened too) exit with 2. The program argument names the command in the usage text.
/// </summary>
public static class RunCommand
{
    /// <summary>The option lines of the usage text, after "usage: PROGRAM ".</summary>
    public const string OptionsUsage =
        "[--invoke NAME] [--dir HOST::GUEST]... [--env K=V]... [--fuel N] [--timeout SECONDS]\n"
        + "        [--max-memory MIB] FILE.wasm [ARGS...]";

    public static int Run(
        string program,
        string[] args,
        TextWriter stdout,
        TextWriter stderr,
        bool inheritStdio = false)
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
        if (NotWasm(file) is { } notWasm)
        {
            stderr.WriteLine($"error: {notWasm}");
            return 1;
        }

        var captureOut = new MemoryStream();
        var captureErr = new MemoryStream();
        try
        {
            // An engine of its own with only the instrumentation the options ask for (fuel and epochs cost up to 1.33x).
            using var engine = new WasmEngine(fuel: options.Fuel is not null, epochs: options.Timeout is not null);
            var limit = new TimeLimit(options.Timeout);
            using var store = new Store(engine.Engine, limit);
            if (options.Fuel is { } fuel)
            {
                store.Fuel = (ulong)fuel;
            }

            if (options.MaxMemoryMib is { } mib)
            {
                MemoryLimits.Cap(store, mib << 20);
            }

            using var module = Module.FromFile(engine.Engine, file);
            var wasi = new WasiConfiguration().WithArgs([Path.GetFileName(file), .. options.Invoke is null ? rest : []]);
            if (inheritStdio)
            {
                wasi.WithInheritedStandardInput().WithInheritedStandardOutput().WithInheritedStandardError();
            }
            else
            {
                wasi.WithStandardOutputCallback(data => captureOut.Write(data)).WithStandardErrorCallback(data => captureErr.Write(data));
            }

            foreach (var (name, value) in options.Env)
            {
                wasi.WithEnvironmentVariable(name, value);
            }

            foreach (var (host, guest) in options.Dirs)
            {
                wasi.WithPreopenedDirectory(host, guest, mutable: true);
            }

            try
            {
                store.SetWasiConfiguration(wasi);
            }
            catch (InvalidOperationException e) when (options.Dirs.Count > 0)
            {
                // Wasmtime opens the --dir directories here; one it cannot open is bad input, not a crash (it aborted).
                stderr.WriteLine($"error: --dir: {e.Message}");
                return 2;
            }
            using var linker = new Linker(engine.Engine);
            linker.DefineWasi();

            // A WASI sleep (poll_oneoff) is ours, as for the proplet's tasks: the epoch check runs in guest code only, so in
            // Wasmtime's own a guest asleep past --timeout slept on; ours wakes at the deadline (the store's data).
            WasiPoll.Shadow(linker);

            // The time limit covers running the guest (its start function included), not compiling it.
            limit.Start();
            using var ticking = options.Timeout is null ? null : engine.Watch(store, () => limit.ThrowIfEnded(cut: false));

            var instance = linker.Instantiate(store, module);
            if (options.Invoke is null)
            {
                if (instance.GetFunction("_start") is not { } start || start.Parameters.Count != 0 || start.Results.Count != 0)
                {
                    stderr.WriteLine($"error: {file} has no exported function '_start' of type [] -> []");
                    return 1;
                }

                start.Invoke();
                return 0;
            }

            // A reactor is initialized before its export is called, as wasmtime run --invoke (and the in-process runtime,
            // spec §2.4 step 3) does: a Go wasmexport or C reactor module ran uninitialized here (a trap, wrong values).
            if (options.Invoke != "_initialize" && instance.GetFunction("_initialize") is { } initialize)
            {
                initialize.Invoke();
            }

            var function = instance.GetFunction(options.Invoke);
            if (function is null)
            {
                stderr.WriteLine($"error: {file} has no exported function '{options.Invoke}'");
                return 1;
            }

            if (rest.Length != function.Parameters.Count)
            {
                stderr.WriteLine($"error: {options.Invoke} takes {function.Parameters.Count} arguments, got {rest.Length}");
                return 1;
            }

            var values = new ValueBox[rest.Length];
            for (var a = 0; a < rest.Length; a++)
            {
                values[a] = Parse(function.Parameters[a], rest[a]);
            }

            var result = function.Invoke(values);
            foreach (var value in result is object[] many ? many : result is null ? [] : [result])
            {
                stdout.WriteLine(Format(value));
            }

            return 0;
        }
        catch (WasmtimeException exit) when (exit.ExitCode is { } code)
        {
            return code;
        }
        catch (WasmtimeException timeout) when (timeout.InnerException is TimeoutException)
        {
            stderr.WriteLine($"error: {timeout.InnerException.Message}");
            return 124;
        }
        catch (TrapException trap)
        {
            // Wasmtime's message is often the trap's own name ("wasm trap: all fuel consumed"): said once.
            var kind = WasmErrors.Trap(trap);
            var reason = WasmErrors.Reason(trap);
            stderr.WriteLine(reason.StartsWith(kind, StringComparison.Ordinal) ? $"error: {reason}" : $"error: {kind}: {reason}");
            return 134;
        }
        catch (WasmtimeException e)
        {
            stderr.WriteLine($"error: {WasmErrors.Reason(e)}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
        finally
        {
            stdout.Write(Encoding.UTF8.GetString(captureOut.ToArray()));
            stderr.Write(Encoding.UTF8.GetString(captureErr.ToArray()));
        }
    }

    /// <summary>The --timeout: what the epoch check and a guest's sleep (<see cref="WasiPoll"/>) end the guest at.</summary>
    private sealed class TimeLimit(double? seconds) : IWaitLimit
    {
        public long Deadline { get; private set; } = long.MaxValue;

        public CancellationToken Cancellation => CancellationToken.None;

        public void Start()
        {
            if (seconds is { } s)
            {
                Deadline = Stopwatch.GetTimestamp() + (long)(s * Stopwatch.Frequency);
            }
        }

        public void ThrowIfEnded(bool cut)
        {
            if (cut || Stopwatch.GetTimestamp() >= Deadline)
            {
                throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"--timeout of {seconds} s exceeded"));
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
                default:
                    throw new FormatException($"unknown option {option}");
            }
        }
    }

    /// <summary>Why <paramref name="file"/> cannot be run: a directory, unreadable, or not WebAssembly (its first bytes).</summary>
    private static string? NotWasm(string file)
    {
        if (Directory.Exists(file))
        {
            return $"{file} is a directory, not a WebAssembly file";
        }

        try
        {
            using var stream = File.OpenRead(file);
            var start = new byte[8];
            var read = stream.ReadAtLeast(start, start.Length, throwOnEndOfStream: false);
            return WasmBinary.NotWasm(start.AsSpan(0, read)) is { } reason ? $"{file}: {reason}" : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return e.Message;
        }
    }

    private static ValueBox Parse(ValueKind kind, string text) => kind switch
    {
        ValueKind.Int32 => text.StartsWith('-') ? int.Parse(text, CultureInfo.InvariantCulture) : (int)uint.Parse(text, CultureInfo.InvariantCulture),
        ValueKind.Int64 => text.StartsWith('-') ? long.Parse(text, CultureInfo.InvariantCulture) : (long)ulong.Parse(text, CultureInfo.InvariantCulture),
        // Floats in Rust's syntax, as wasmtime reads them (float.Parse took "1,000" and "Infinity").
        ValueKind.Float32 or ValueKind.Float64 => ValueText.TryParse(kind, text, out var value, out var error) ? value : throw new FormatException(error),
        _ => throw new FormatException($"cannot pass a {kind} argument from the command line"),
    };

    /// <summary>A result as wasmtime run --invoke prints it: floats in Rust's Display ("inf", no exponent), as the
    /// in-process runtime's results (they were "Infinity", "1E+20").</summary>
    private static string Format(object? value) => value switch
    {
        int or long or float or double => ValueText.Format(value),
        null => "null",
        _ => value.ToString() ?? "ref",
    };
}
