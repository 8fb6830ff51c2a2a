using System.Globalization;
using Propeller.Edge.Configuration;

namespace Propeller.Edge.Tasks;

/// <summary>
/// Per-task execution limits. The start command has no fields for them, so a task sets them with `propeller-proplet run`'s
/// flags in <c>cli_args</c> (<c>--fuel N</c>, <c>--max-memory MIB</c>, <c>--timeout SECONDS</c>; the in-process runtime
/// ignored cli_args before); what a task leaves out comes from the proplet defaults (PROPLET_TASK_*).
/// </summary>
public sealed record TaskLimits(long? Fuel, long? MaxMemoryMib, TimeSpan? Timeout)
{
    /// <summary>
    /// The longest wait .NET's timers take (2^32 − 2 ms, about 49.7 days): the bound of every time setting and limit the
    /// proplet sets a timer or a delay with, so a long value is refused where it is read instead of failing the task.
    /// </summary>
    public static readonly TimeSpan MaxWait = Contracts.GoDuration.MaxTimer;

    public static TaskLimits Defaults(PropletSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return new TaskLimits(settings.TaskFuel, settings.TaskMaxMemoryMib, settings.TaskTimeout);
    }

    /// <summary>Applies the limit flags found in <paramref name="cliArgs"/>; other arguments are left alone. A malformed
    /// limit value is an error (the message names the flag).</summary>
    public static TaskLimits From(IReadOnlyList<string> cliArgs, TaskLimits defaults)
    {
        ArgumentNullException.ThrowIfNull(cliArgs);
        ArgumentNullException.ThrowIfNull(defaults);
        var limits = defaults;
        for (var i = 0; i < cliArgs.Count; i++)
        {
            var (flag, value) = Split(cliArgs, ref i);
            switch (flag)
            {
                case "--fuel":
                    limits = limits with
                    {
                        Fuel = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var fuel) && fuel > 0
                            ? fuel
                            : throw new FormatException($"--fuel '{value}': expected a positive integer"),
                    };
                    break;
                case "--max-memory":
                    limits = limits with
                    {
                        MaxMemoryMib = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var mib) && mib is > 0 and < 1 << 20
                            ? mib
                            : throw new FormatException($"--max-memory '{value}': expected a size in MiB"),
                    };
                    break;
                case "--timeout":
                    limits = limits with
                    {
                        Timeout = double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds) && seconds > 0 && seconds <= MaxWait.TotalSeconds
                            ? TimeSpan.FromSeconds(seconds)
                            : throw new FormatException($"--timeout '{value}': expected a positive number of seconds, at most {MaxWait.TotalSeconds:F0}"),
                    };
                    break;
                default:
                    break;
            }
        }

        return limits;
    }

    /// <summary>
    /// <paramref name="cliArgs"/> without the limit flags <see cref="From"/> reads and their values: what an external
    /// runtime is given. The proplet enforces the time limit itself (it kills the child); the wasmtime CLI refuses these
    /// flags ("unexpected argument") and `propeller-proplet run` the <c>--flag=N</c> form.
    /// </summary>
    public static List<string> Without(IReadOnlyList<string> cliArgs)
    {
        ArgumentNullException.ThrowIfNull(cliArgs);
        var rest = new List<string>(cliArgs.Count);
        for (var i = 0; i < cliArgs.Count; i++)
        {
            var arg = cliArgs[i];
            if (Split(cliArgs, ref i).Flag is null)
            {
                rest.Add(arg);
            }
        }

        return rest;
    }

    private static bool IsFlag(string arg) => arg is "--fuel" or "--max-memory" or "--timeout";

    private static bool IsFlagWithValue(string arg) => arg.IndexOf('=', StringComparison.Ordinal) is > 0 and var eq && IsFlag(arg[..eq]);

    private static (string? Flag, string? Value) Split(IReadOnlyList<string> args, ref int i)
    {
        var arg = args[i];
        if (!IsFlag(arg))
        {
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            return IsFlagWithValue(arg) ? (arg[..eq], arg[(eq + 1)..]) : (null, null);
        }

        if (i + 1 >= args.Count)
        {
            throw new FormatException($"{arg} needs a value");
        }

        return (arg, args[++i]);
    }
}
