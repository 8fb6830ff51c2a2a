using System.Linq.Expressions;
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
        // Compiled once per id type: reflection per value would dominate reading large pages of events.
        private static readonly Func<Guid, T> Create = BuildCreate();
        private static readonly Func<T, Guid> GetValue = BuildGetValue();

        public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => Create(reader.GetGuid());

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(GetValue(value));

        private static Func<Guid, T> BuildCreate()
        {
            var guid = Expression.Parameter(typeof(Guid), "value");
            return Expression.Lambda<Func<Guid, T>>(Expression.New(typeof(T).GetConstructor([typeof(Guid)])!, guid), guid).Compile();
        }

        private static Func<T, Guid> BuildGetValue()
        {
            var id = Expression.Parameter(typeof(T), "id");
            return Expression.Lambda<Func<T, Guid>>(Expression.Property(id, "Value"), id).Compile();
        }
    }
}
