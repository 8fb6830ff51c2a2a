using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Contracts.Json;

/// <summary>
/// Times as the original writes them (spec §1.1): RFC 3339 in UTC with up to nanosecond digits, and the zero time
/// as <c>0001-01-01T00:00:00Z</c> (never omitted). A JSON <c>null</c> reads as the zero time, as Go's decoding leaves
/// a time alone for it.
/// </summary>
public sealed class WireTimeConverter : JsonConverter<DateTimeOffset>
{
    public override bool HandleNull => true;

    public override DateTimeOffset Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.Null ? default : Rfc3339.TryParse(reader.GetString() ?? throw new JsonException("expected an RFC 3339 time"), out var value)
            ? value
            : throw new JsonException("expected an RFC 3339 time"); // a JsonException: the caller's "invalid JSON body" (400), not a 500

    public override void Write(Utf8JsonWriter writer, DateTimeOffset value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStringValue(value == default
            ? "0001-01-01T00:00:00Z"
            : value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture));
    }
}
