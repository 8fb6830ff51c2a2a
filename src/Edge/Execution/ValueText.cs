using System.Globalization;
using System.Numerics;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Edge.Execution;

/// <summary>
/// Task inputs and results as text, the way the Rust proplet does it (spec §2.4 steps 6 and 8): integers are strict
/// signed decimals (optional sign, no spaces, hex or decimal point), floats use Rust's syntax (inf, infinity, NaN in any
/// case), and results print like Rust's Display (no exponent, shortest round trip, "inf", "NaN").
/// </summary>
public static class ValueText
{
    /// <summary>The most significant digits an integer of any Wasm type has (u64's 18446744073709551615).</summary>
    private const int MaxIntegerDigits = 20;

    /// <summary>Parses <paramref name="text"/> for a parameter of <paramref name="kind"/>; the error is the proplet's message.</summary>
    public static bool TryParse(ValueKind kind, string text, out ValueBox value, out string error)
    {
        ArgumentNullException.ThrowIfNull(text);
        value = default;
        error = "";
        switch (kind)
        {
            case ValueKind.Int32:
                if (TryInteger(text, int.MinValue, int.MaxValue, out var i32, out var reason32))
                {
                    value = (int)i32;
                    return true;
                }

                error = $"Failed to parse '{text}' as i32: {reason32}";
                return false;
            case ValueKind.Int64:
                if (TryInteger(text, long.MinValue, long.MaxValue, out var i64, out var reason64))
                {
                    value = (long)i64;
                    return true;
                }

                error = $"Failed to parse '{text}' as i64: {reason64}";
                return false;
            case ValueKind.Float32:
                if (TryFloat(text, out var f32))
                {
                    // Parsed again as float when finite: rounding through double could be off by one ulp.
                    value = double.IsFinite(f32) ? float.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture) : (float)f32;
                    return true;
                }

                error = $"Failed to parse '{text}' as f32: invalid float literal";
                return false;
            case ValueKind.Float64:
                if (TryFloat(text, out var f64))
                {
                    value = f64;
                    return true;
                }

                error = $"Failed to parse '{text}' as f64: invalid float literal";
                return false;
            default:
                error = $"Unsupported Wasm value type for arg '{text}'";
                return false;
        }
    }

    /// <summary>The result text of a value as Wasmtime returns it: signed decimal integers, Rust-Display floats; others give "".</summary>
    public static string Format(object? value) => value switch
    {
        int i32 => i32.ToString(CultureInfo.InvariantCulture),
        long i64 => i64.ToString(CultureInfo.InvariantCulture),
        float f32 => FloatText.Format(f32),
        double f64 => FloatText.Format(f64),
        _ => "",
    };

    private static bool TryInteger(string text, BigInteger min, BigInteger max, out BigInteger value, out string reason)
    {
        value = 0;
        if (text.Length == 0)
        {
            reason = "cannot parse integer from empty string";
            return false;
        }

        var start = text[0] is '+' or '-' ? 1 : 0;
        if (start == text.Length || text.AsSpan(start).ContainsAnyExceptInRange('0', '9'))
        {
            reason = "invalid digit found in string";
            return false;
        }

        if (text.AsSpan(start).TrimStart('0').Length > MaxIntegerDigits)
        {
            // Out of range for every type, known without BigInteger, whose parse is superlinear: a 5,000,000-digit input
            // took seconds of the task's slot that neither a stop nor --timeout could end (the guest had not started).
            reason = text[0] == '-' ? "number too small to fit in target type" : "number too large to fit in target type";
            return false;
        }

        value = BigInteger.Parse(text.AsSpan(start), NumberStyles.None, CultureInfo.InvariantCulture);
        if (text[0] == '-')
        {
            value = -value;
        }

        if (value > max)
        {
            reason = "number too large to fit in target type";
            return false;
        }

        if (value < min)
        {
            reason = "number too small to fit in target type";
            return false;
        }

        reason = "";
        return true;
    }

    private static bool TryFloat(string text, out double value)
    {
        value = 0;
        if (text.Length == 0)
        {
            return false;
        }

        var negative = text[0] == '-';
        var body = text[0] is '+' or '-' ? text[1..] : text;
        switch (body.ToLowerInvariant())
        {
            case "inf" or "infinity":
                value = negative ? double.NegativeInfinity : double.PositiveInfinity;
                return true;
            case "nan":
                value = double.NaN;
                return true;
        }

        // Rust's grammar: digits, an optional '.', optional digits (at least one digit overall), an optional exponent.
        var i = 0;
        var mantissaDigits = 0;
        while (i < body.Length && char.IsAsciiDigit(body[i]))
        {
            i++;
            mantissaDigits++;
        }

        if (i < body.Length && body[i] == '.')
        {
            i++;
            while (i < body.Length && char.IsAsciiDigit(body[i]))
            {
                i++;
                mantissaDigits++;
            }
        }

        if (mantissaDigits == 0)
        {
            return false;
        }

        if (i < body.Length && body[i] is 'e' or 'E')
        {
            i++;
            if (i < body.Length && body[i] is '+' or '-')
            {
                i++;
            }

            var exponentDigits = 0;
            while (i < body.Length && char.IsAsciiDigit(body[i]))
            {
                i++;
                exponentDigits++;
            }

            if (exponentDigits == 0)
            {
                return false;
            }
        }

        return i == body.Length && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }
}
