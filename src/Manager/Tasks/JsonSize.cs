using System.Text.Json;

namespace Propeller.Manager.Tasks;

/// <summary>
/// The size of a JSON value as Go's json.Marshal writes it, which is what the original's 1 MiB metadata limit measures
/// (spec §2.1 "≤ 1 MiB serialised"): compact, UTF-8, strings escaped as Go escapes them (<c>\"</c>, <c>\\</c>,
/// <c>\n</c>, <c>\r</c>, <c>\t</c>; other control characters, <c>&lt;</c>, <c>&gt;</c>, <c>&amp;</c>, U+2028 and U+2029
/// as <c>\u00XX</c>). Numbers count as their text. Counted without writing the value out; the raw text's length in
/// characters, used before, counted whitespace and a multi-byte character as one.
/// </summary>
internal static class JsonSize
{
    public static long CompactUtf8Bytes(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                long obj = 2; // {}
                var properties = 0;
                foreach (var property in element.EnumerateObject())
                {
                    obj += StringBytes(property.Name) + 1 + CompactUtf8Bytes(property.Value); // "name":value
                    properties++;
                }

                return obj + Math.Max(0, properties - 1); // commas
            case JsonValueKind.Array:
                long array = 2; // []
                var items = 0;
                foreach (var item in element.EnumerateArray())
                {
                    array += CompactUtf8Bytes(item);
                    items++;
                }

                return array + Math.Max(0, items - 1);
            case JsonValueKind.String:
                return StringBytes(element.GetString()!);
            case JsonValueKind.Number:
                return element.GetRawText().Length; // ASCII
            case JsonValueKind.True:
            case JsonValueKind.Null:
                return 4;
            case JsonValueKind.False:
                return 5;
            default:
                return 0;
        }
    }

    private static long StringBytes(string value)
    {
        long bytes = 2; // quotes
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                bytes += 4; // a pair: one code point beyond the BMP
                i++;
                continue;
            }

            bytes += c switch
            {
                '"' or '\\' or '\n' or '\r' or '\t' => 2,
                < ' ' or '<' or '>' or '&' or '\u2028' or '\u2029' => 6,
                < '\u0080' => 1,
                < '\u0800' => 2,
                _ => 3, // the rest of the BMP; a lone surrogate is written as U+FFFD, 3 bytes too
            };
        }

        return bytes;
    }
}
