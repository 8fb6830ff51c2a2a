using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Contracts.Json;

/// <summary>
/// A bool or number that reads JSON <c>null</c> as its zero value, as Go's decoding leaves a field alone for a
/// <c>null</c> (spec §2.1, §2.6): <c>{"daemon":null}</c> is not daemon, <c>{"priority":null}</c> is no priority (a
/// create's default, an update's no change). Everything else is read and written as System.Text.Json does.
/// </summary>
public sealed class NullAsDefaultConverter<T> : JsonConverter<T>
    where T : struct
{
    public override bool HandleNull => true;

    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.Null ? default : Inner(options).Read(ref reader, typeToConvert, options);

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => Inner(options).Write(writer, value, options);

    private static JsonConverter<T> Inner(JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return (JsonConverter<T>)options.GetConverter(typeof(T));
    }
}
