using System.Globalization;

namespace Propeller.WasmHost;

/// <summary>
/// Floats printed like Rust's <c>Display</c> (what the original proplet's results and WAVE values show): the shortest
/// text that round-trips, never an exponent, "inf", "-inf" and "NaN".
/// </summary>
public static class FloatText
{
    public static string Format(float value) => Format(value, value.ToString("R", CultureInfo.InvariantCulture));

    public static string Format(double value) => Format(value, value.ToString("R", CultureInfo.InvariantCulture));

    private static string Format(double value, string roundTrip)
    {
        if (double.IsNaN(value))
        {
            return "NaN";
        }

        if (double.IsInfinity(value))
        {
            return value > 0 ? "inf" : "-inf";
        }

        var e = roundTrip.IndexOfAny(['E', 'e']);
        if (e < 0)
        {
            return roundTrip;
        }

        // Expand d.ddddE±x into plain decimal notation, as Rust's Display does.
        var negative = roundTrip[0] == '-';
        var mantissa = roundTrip[(negative ? 1 : 0)..e];
        var exponent = int.Parse(roundTrip.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        var dot = mantissa.IndexOf('.', StringComparison.Ordinal);
        var digits = dot < 0 ? mantissa : mantissa.Remove(dot, 1);
        var pointAt = (dot < 0 ? mantissa.Length : dot) + exponent;
        string plain;
        if (pointAt <= 0)
        {
            plain = "0." + new string('0', -pointAt) + digits;
        }
        else if (pointAt >= digits.Length)
        {
            plain = digits + new string('0', pointAt - digits.Length);
        }
        else
        {
            plain = digits[..pointAt] + "." + digits[pointAt..];
        }

        return negative ? "-" + plain : plain;
    }
}
