using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Infrastructure.Serialization;

/// <summary>The JSON shape of stored events, metadata and snapshots: snake_case, typed ids as strings, nulls omitted.</summary>
internal static class JsonDefaults
{
    public static JsonSerializerOptions Options { get; } = Create();

    private static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.General) { MaxDepth = 64 };
        Apply(options);
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }

    /// <summary>
    /// Gives <paramref name="options"/> the stored shape: also used for Marten's serializer, so events stored by Marten
    /// have the same JSON as before (GET /tasks/{id}/history keeps its shape).
    /// </summary>
    public static void Apply(JsonSerializerOptions options)
    {
        options.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        options.DictionaryKeyPolicy = null;
        options.DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull;
        options.Converters.Add(new TypedIdConverterFactory());
        options.Converters.Add(new EquatableArrayConverterFactory());
        options.Converters.Add(new EquatableMapConverter());
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower));
    }
}
