using System.Globalization;

namespace Propeller.Bench.Support;

/// <summary>
/// Reads a benchmark's options (`--name value` and bare flags) strictly: an unknown flag, a value that does not parse or
/// one below its minimum is a <see cref="BenchUsageException"/> (one line, exit code 2), never a stack trace, a silent
/// default, or a run that divides by zero or waits for nothing.
/// </summary>
internal static class BenchArgs
{
    /// <summary>
    /// Rejects any token that is neither one of <paramref name="valueOptions"/> (each followed by its value), nor that
    /// value, nor one of <paramref name="flags"/>: `manager 1000` or `manager -t 1000` would otherwise run the defaults as
    /// if they had been asked for.
    /// </summary>
    public static void Known(string[] args, string[] valueOptions, string[]? flags = null)
    {
        for (var i = 0; i < args.Length; i++)
        {
            if (valueOptions.Contains(args[i], StringComparer.Ordinal))
            {
                if (++i >= args.Length)
                {
                    throw new BenchUsageException($"{args[i - 1]} needs a value");
                }
            }
            else if (flags?.Contains(args[i], StringComparer.Ordinal) != true)
            {
                var known = string.Join(' ', valueOptions.Concat(flags ?? []));
                var what = args[i].StartsWith('-') ? "unknown option" : "unexpected argument";
                throw new BenchUsageException($"{what} {args[i]} (known: {(known.Length > 0 ? known : "none")})");
            }
        }
    }

    /// <summary>
    /// Rejects any of <paramref name="ignored"/> given with <paramref name="mode"/>, whose run does not read them (a figure
    /// printed as if measured with them would not be).
    /// </summary>
    public static void NotWith(string[] args, string mode, params string[] ignored)
    {
        if (args.Contains(mode, StringComparer.Ordinal) && ignored.FirstOrDefault(o => args.Contains(o, StringComparer.Ordinal)) is { } option)
        {
            throw new BenchUsageException($"{option} has no effect with {mode}");
        }
    }

    /// <summary>The value after <paramref name="name"/>, or null when it is absent.</summary>
    public static string? Value(string[] args, string name)
    {
        var index = Array.IndexOf(args, name);
        if (index < 0)
        {
            return null;
        }

        return index + 1 < args.Length ? args[index + 1] : throw new BenchUsageException($"{name} needs a value");
    }

    /// <summary>The integer after <paramref name="name"/> (at least <paramref name="min"/>), or <paramref name="fallback"/>.</summary>
    public static int Int(string[] args, string name, int fallback, int min = 1) =>
        Value(args, name) is { } text ? ParseInt(name, text, min) : fallback;

    /// <summary>The number after <paramref name="name"/> (greater than <paramref name="above"/>), or <paramref name="fallback"/>.</summary>
    public static double Double(string[] args, string name, double fallback, double above = 0) =>
        Value(args, name) is { } text ? ParseDouble(name, text, above) : fallback;

    /// <summary><paramref name="text"/> as an integer of at least <paramref name="min"/>; <paramref name="what"/> names it in the message.</summary>
    public static int ParseInt(string what, string text, int min = 1)
    {
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            throw new BenchUsageException($"{what} {text}: not an integer");
        }

        return value >= min ? value : throw new BenchUsageException($"{what} {text}: must be at least {min}");
    }

    /// <summary><paramref name="text"/> as a number greater than <paramref name="above"/>.</summary>
    public static double ParseDouble(string what, string text, double above = 0)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
        {
            throw new BenchUsageException($"{what} {text}: not a number");
        }

        return value > above ? value : throw new BenchUsageException(FormattableString.Invariant($"{what} {text}: must be greater than {above}"));
    }

    /// <summary>The positional argument at <paramref name="index"/> as an integer of at least 1, or <paramref name="fallback"/>.</summary>
    public static int PositionalInt(string[] args, int index, string what, int fallback) =>
        index < args.Length ? ParseInt(what, args[index]) : fallback;

    /// <summary>Rejects more than <paramref name="count"/> arguments, and any that looks like a flag (the benchmark takes none).</summary>
    public static void Positional(string[] args, int count, string usage)
    {
        if (args.Length > count || args.FirstOrDefault(a => a.StartsWith("--", StringComparison.Ordinal)) is not null)
        {
            throw new BenchUsageException($"arguments: {usage}");
        }
    }
}
