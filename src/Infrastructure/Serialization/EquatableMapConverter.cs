using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Domain.Common;

namespace Propeller.Infrastructure.Serialization;

/// <summary>Reads and writes <see cref="EquatableMap"/> as a JSON object of strings.</summary>
internal sealed class EquatableMapConverter : JsonConverter<EquatableMap>
{
    public override EquatableMap Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.Null ? EquatableMap.Empty : new(JsonSerializer.Deserialize<Dictionary<string, string>>(ref reader, options) ?? []);

    public override void Write(Utf8JsonWriter writer, EquatableMap value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        foreach (var (key, item) in value)
        {
            writer.WriteString(key, item);
        }

        writer.WriteEndObject();
    }
}
