using System.Globalization;

namespace Propeller.Contracts;

/// <summary>
/// Durations as the original writes them (Go's <c>time.ParseDuration</c>: "300ms", "1.5s", "2m30s", "1h"), and a bare
/// number meaning seconds. Negative values are rejected.
/// </summary>
public static class GoDuration
{
    /// <summary>The longest duration a .NET timer takes (uint.MaxValue - 1 ms, about 49.7 days): a longer timeout setting
    /// made CancelAfter or Task.WaitAsync throw on every use, so settings are capped at it.</summary>
    public static readonly TimeSpan MaxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    public static bool TryParse(string? text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        if (text.StartsWith('+'))
        {
            text = text[1..]; // Go's ParseDuration takes one leading sign ("+30s")
            if (text.Length == 0)
            {
                return false;
            }
        }

        if (double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds))
        {
            // double.TryParse takes "NaN" and "Infinity" whatever the style says; neither, nor a number past TimeSpan's
            // range, is a duration.
            if (!double.IsFinite(seconds) || seconds >= TimeSpan.MaxValue.TotalSeconds)
            {
                return false;
            }

            value = TimeSpan.FromSeconds(seconds);
            return true;
        }

        var total = 0.0;
        var i = 0;
        while (i < text.Length)
        {
            var start = i;
            while (i < text.Length && (char.IsAsciiDigit(text[i]) || text[i] == '.'))
            {
                i++;
            }

            if (i == start || !double.TryParse(text.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                return false;
            }

            var unitStart = i;
            while (i < text.Length && !char.IsAsciiDigit(text[i]) && text[i] != '.')
            {
                i++;
            }

            double? scale = text[unitStart..i] switch
            {
                "ns" => 1e-9,
                "us" or "\u00b5s" or "\u03bcs" => 1e-6, // the micro sign and Greek mu: Go takes both
                "ms" => 1e-3,
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => null,
            };
            if (scale is null)
            {
                return false;
            }

            total += number * scale.Value;
        }

        if (!double.IsFinite(total) || total >= TimeSpan.MaxValue.TotalSeconds)
        {
            return false;
        }

        value = TimeSpan.FromSeconds(total);
        return true;
    }
}
