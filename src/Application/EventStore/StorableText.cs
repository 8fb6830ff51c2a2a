using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;
using System.Text.Json;

namespace Propeller.Application.EventStore;

/// <summary>
/// Values PostgreSQL can store: no U+0000, which neither text nor jsonb holds (22P05), only valid Unicode (a lone
/// surrogate escape such as \udc00 jsonb refuses, and .NET cannot read as a string), and no JSON number beyond numeric's
/// range (131,072 digits before the point, 16,383 after; 22003). Input breaking any of them is refused where it
/// arrives, not sent to PostgreSQL to refuse: failing there can leave a pooled connection out of step with the server
/// (Npgsql 10.0.0–10.0.3 with auto-prepared statements: the next command on it reads another statement's rows, "Received
/// unexpected backend message DataRow"), failing later commands of other requests.
/// </summary>
public static class StorableText
{
    public const string Nul = "must not contain \\u0000";
    public const string InvalidUnicode = "must be valid Unicode (a lone surrogate such as \\udc00, or invalid UTF-8, is not)";
    public const string HugeNumber = "holds a number beyond PostgreSQL's numeric range: it cannot be stored";

    private const int MaxIntegerDigits = 131_072;
    private const int MaxScale = 16_383;

    public static bool HoldsNul(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal);

    /// <summary>What in <paramref name="element"/> PostgreSQL cannot store (<see cref="Nul"/>, <see cref="InvalidUnicode"/>,
    /// <see cref="HugeNumber"/>), or null.</summary>
    public static string? Problem(JsonElement element) => Problem(JsonMarshal.GetRawUtf8Value(element));

    /// <summary>What in the UTF-8 JSON <paramref name="json"/> PostgreSQL cannot store, or null; <see cref="JsonException"/>
    /// when it is not JSON.</summary>
    public static string? Problem(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.String or JsonTokenType.PropertyName when reader.ValueIsEscaped:
                    string text;
                    try
                    {
                        text = reader.GetString()!;
                    }
                    catch (InvalidOperationException)
                    {
                        return InvalidUnicode;
                    }

                    if (HoldsNul(text))
                    {
                        return Nul;
                    }

                    break;
                case JsonTokenType.String or JsonTokenType.PropertyName when !Utf8.IsValid(reader.ValueSpan):
                    return InvalidUnicode;
                case JsonTokenType.Number when (reader.ValueSpan.Length > MaxScale || reader.ValueSpan.IndexOfAny((byte)'e', (byte)'E') >= 0)
                    && IsHuge(Encoding.UTF8.GetString(reader.ValueSpan)):
                    return HugeNumber;
            }
        }

        return null;
    }

    /// <summary>
    /// How long <paramref name="element"/> reads back from jsonb, which writes every number out in full (<c>1e300</c> as a
    /// 1 and 300 zeros, <c>0e-300</c> as 0. and 300 zeros): the text's length with its numbers written out (the space
    /// jsonb puts after each comma and colon not counted), and in <paramref name="longestNumber"/> the most digits one of
    /// its numbers takes. A number of 8 bytes can read back as 131,000 characters.
    /// </summary>
    public static long WrittenOutLength(JsonElement element, out long longestNumber)
    {
        var json = JsonMarshal.GetRawUtf8Value(element);
        long length = json.Length;
        longestNumber = 0;
        var reader = new Utf8JsonReader(json);
        while (reader.Read())
        {
            if (reader.TokenType != JsonTokenType.Number)
            {
                continue;
            }

            var digits = reader.ValueSpan.IndexOfAny((byte)'e', (byte)'E') < 0
                ? reader.ValueSpan.Length
                : Size(Encoding.UTF8.GetString(reader.ValueSpan)) is (var integerDigits, var scale, var nonZero)
                    ? (nonZero ? Math.Max(integerDigits, 1) : 1) + Math.Max(scale, 0)
                    : long.MaxValue / 2;
            longestNumber = Math.Max(longestNumber, digits);
            length += Math.Max(digits - reader.ValueSpan.Length, 0);
        }

        return length;
    }

    /// <summary>Whether the JSON number <paramref name="number"/> has more integer digits or a larger scale than numeric takes.</summary>
    private static bool IsHuge(string number) =>
        Size(number) is not (var integerDigits, var scale, var nonZero) // PostgreSQL refuses such an exponent whatever the value, 0 included
        || scale > MaxScale || (integerDigits > MaxIntegerDigits && nonZero);

    /// <summary>The JSON number <paramref name="number"/> as numeric holds it: its digits before the point, its scale
    /// (digits after it), whether it is not zero; null for an exponent numeric refuses.</summary>
    private static (long IntegerDigits, long Scale, bool NonZero)? Size(string number)
    {
        var e = number.IndexOfAny(['e', 'E']);
        var mantissa = (e < 0 ? number : number[..e]).TrimStart('-');
        if (!long.TryParse(e < 0 ? "0" : number[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var exponent)
            || Math.Abs(exponent) >= int.MaxValue / 2)
        {
            return null;
        }

        var point = mantissa.IndexOf('.', StringComparison.Ordinal);
        var integer = (point < 0 ? mantissa : mantissa[..point]).TrimStart('0');
        var fraction = point < 0 ? "" : mantissa[(point + 1)..];
        var scale = fraction.Length - exponent;
        var integerDigits = integer.Length > 0 ? integer.Length + exponent : exponent - (fraction.Length - fraction.TrimStart('0').Length);
        return (integerDigits, scale, mantissa.Any(c => c is >= '1' and <= '9'));
    }
}
