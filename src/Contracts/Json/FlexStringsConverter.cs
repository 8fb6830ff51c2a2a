using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Contracts.Json;

/// <summary>
/// The original's "FlexStrings" (spec §2.1 inputs): a JSON array whose items are strings or numbers; numbers keep
/// their literal text ("1.50" stays "1.50"). Any other item is a JSON error naming its index. Written as strings.
/// </summary>
public sealed class FlexStringsConverter : JsonConverter<IReadOnlyList<string>>
{
    /// <summary>An explicit <c>null</c> is an empty list (a PUT's <c>"inputs": null</c> clears them, spec §2.6); System.Text.Json
    /// would otherwise set null without asking, the same as a missing key.</summary>
    public override bool HandleNull => true;

    public override IReadOnlyList<string>? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return [];
        }

        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw new JsonException("expected an array of strings or numbers"); // after the field's path (JsonProblem)
        }

        var items = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            items.Add(reader.TokenType switch
            {
                JsonTokenType.String => reader.GetString()!,
                JsonTokenType.Number => Encoding.UTF8.GetString(reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan),
                _ => throw new JsonException($"[{items.Count}]: expected a string or number"),
            });
        }

        return items;
    }

    public override void Write(Utf8JsonWriter writer, IReadOnlyList<string>? value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (value is null)
        {
            writer.WriteNullValue(); // asked for nulls too (HandleNull): written as System.Text.Json would
            return;
        }

        writer.WriteStartArray();
        foreach (var item in value)
        {
            writer.WriteStringValue(item);
        }

        writer.WriteEndArray();
    }
}
