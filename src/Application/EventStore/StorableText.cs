using System.Globalization;
using System.Text.Json;

namespace Propeller.Application.EventStore;

/// <summary>
/// Values PostgreSQL can store: no U+0000, which neither text nor jsonb holds (22P05), and no JSON number beyond
/// numeric's range (131,072 digits before the point, 16,383 after; 22003). Input breaking either is refused where it
/// arrives, not sent to PostgreSQL to refuse: failing there can leave a pooled connection out of step with the server
/// (Npgsql 10.0.0–10.0.3 with auto-prepared statements: the next command on it reads another statement's rows, "Received
/// unexpected backend message DataRow"), failing later commands of other requests.
/// </summary>
public static class StorableText
{
    private const int MaxIntegerDigits = 131_072;
    private const int MaxScale = 16_383;

    public static bool HoldsNul(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal);

    /// <summary>Whether a string or a property name anywhere in <paramref name="element"/> holds U+0000.</summary>
    public static bool HoldsNul(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => HoldsNul(element.GetString()),
        JsonValueKind.Object => element.EnumerateObject().Any(p => HoldsNul(p.Name) || HoldsNul(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().Any(HoldsNul),
        _ => false,
    };

    /// <summary>Whether a string or a property name in the UTF-8 JSON <paramref name="json"/> holds U+0000 (only an escape
    /// can); <see cref="JsonException"/> when it is not JSON.</summary>
    public static bool HoldsNul(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        while (reader.Read())
        {
            if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped && HoldsNul(reader.GetString()))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>What in <paramref name="element"/> PostgreSQL cannot store ("\u0000" or "a number beyond PostgreSQL's range"), or null.</summary>
    public static string? Problem(JsonElement element) =>
        HoldsNul(element) ? "must not contain \\u0000" : HoldsHugeNumber(element) ? "holds a number beyond PostgreSQL's numeric range: it cannot be stored" : null;

    private static bool HoldsHugeNumber(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Number => IsHuge(element.GetRawText()),
        JsonValueKind.Object => element.EnumerateObject().Any(p => HoldsHugeNumber(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().Any(HoldsHugeNumber),
        _ => false,
    };

    /// <summary>Whether the JSON number <paramref name="number"/> has more integer digits or a larger scale than numeric takes.</summary>
    private static bool IsHuge(string number)
    {
        var e = number.IndexOfAny(['e', 'E']);
        var mantissa = (e < 0 ? number : number[..e]).TrimStart('-');
        if (!long.TryParse(e < 0 ? "0" : number[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var exponent)
            || Math.Abs(exponent) >= int.MaxValue / 2)
        {
            return true; // PostgreSQL refuses such an exponent whatever the value, 0 included
        }

        var point = mantissa.IndexOf('.', StringComparison.Ordinal);
        var integer = (point < 0 ? mantissa : mantissa[..point]).TrimStart('0');
        var fraction = point < 0 ? "" : mantissa[(point + 1)..];
        var scale = fraction.Length - exponent;
        var integerDigits = integer.Length > 0 ? integer.Length + exponent : exponent - (fraction.Length - fraction.TrimStart('0').Length);
        return scale > MaxScale || (integerDigits > MaxIntegerDigits && mantissa.Any(c => c is >= '1' and <= '9'));
    }
}
