using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Infrastructure.Serialization;

/// <summary>Writes id value types (<c>readonly record struct XId(Guid Value)</c>) as their Guid string.</summary>
internal sealed class TypedIdConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) =>
        typeToConvert.IsValueType
        && typeToConvert.Name.EndsWith("Id", StringComparison.Ordinal)
        && typeToConvert.GetConstructor([typeof(Guid)]) is not null
        && typeToConvert.GetProperty("Value", BindingFlags.Public | BindingFlags.Instance)?.PropertyType == typeof(Guid);

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(TypedIdConverter<>).MakeGenericType(typeToConvert))!;

    private sealed class TypedIdConverter<T> : JsonConverter<T>
        where T : struct
    {
        private static readonly ConstructorInfo Constructor = typeof(T).GetConstructor([typeof(Guid)])!;
        private static readonly PropertyInfo ValueProperty = typeof(T).GetProperty("Value")!;

        public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            (T)Constructor.Invoke([reader.GetGuid()]);

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) =>
            writer.WriteStringValue((Guid)ValueProperty.GetValue(value)!);
    }
}
