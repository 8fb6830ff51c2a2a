using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Infrastructure.Serialization;

/// <summary>The JSON shape of stored events, metadata and snapshots: snake_case, typed ids as strings, nulls omitted.</summary>
internal static class JsonDefaults
{
    public static JsonSerializerOptions Options { get; } = Create();

    private static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.General)
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DictionaryKeyPolicy = null,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            MaxDepth = 64,
        };
        options.Converters.Add(new TypedIdConverterFactory());
        options.Converters.Add(new EquatableArrayConverterFactory());
        options.Converters.Add(new EquatableMapConverter());
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower));
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }
}
