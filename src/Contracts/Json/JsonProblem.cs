using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Propeller.Contracts.Json;

/// <summary>What is wrong with a JSON message or body, said in the protocol's terms rather than .NET's.</summary>
public static class JsonProblem
{
    /// <summary>
    /// A value of the wrong type in the protocol's own words ("cli_args[0]: expected a string"), from the JSON contract
    /// of <paramref name="body"/> under <paramref name="options"/> at the exception's path; System.Text.Json's ("The JSON
    /// value could not be converted to System.Collections.Generic.IReadOnlyList`1[System.String]. Path: …") named .NET
    /// types. A converter's own message after the field's path ("next_run: expected an RFC 3339 time"; it named no
    /// field). Anything else (a syntax error) as System.Text.Json says it, with its line and position.
    /// </summary>
    public static string Describe(JsonException ex, Type body, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(ex);
        ArgumentNullException.ThrowIfNull(options);
        if (!ex.Message.StartsWith("The JSON value could not be converted to ", StringComparison.Ordinal))
        {
            // System.Text.Json's own messages carry " Path: $..."; a converter's thrown message does not.
            // A message of an item ("[1]: expected ...") follows the path directly.
            return ex.Path is { Length: > 1 } at && !ex.Message.Contains(" Path: ", StringComparison.Ordinal)
                ? Field(at) + (ex.Message.StartsWith('[') ? "" : ": ") + ex.Message
                : ex.Message;
        }

        if (ex.Path is not { } path || Expected(body, path, options) is not { } expected)
        {
            return ex.Message;
        }

        return path == "$" ? $"expected {expected}" : $"{Field(path)}: expected {expected}";
    }

    /// <summary>A JSON path as the protocol names the field: <c>$.cli_args[0]</c> as <c>cli_args[0]</c>.</summary>
    private static string Field(string path) => path[(path[1] == '.' ? 2 : 1)..];

    /// <summary>What the contract of <paramref name="body"/> takes at <paramref name="path"/> (<c>$</c>, <c>$.name</c>,
    /// <c>$.cli_args[0]</c>, <c>$.env.KEY</c>), or null when the path leads nowhere known.</summary>
    private static string? Expected(Type body, string path, JsonSerializerOptions options)
    {
        var type = body;
        var rest = path.AsSpan(1);
        var comparison = options.PropertyNameCaseInsensitive ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        while (!rest.IsEmpty)
        {
            var info = options.GetTypeInfo(type);
            if (rest[0] == '[')
            {
                var close = rest.IndexOf(']');
                if (close < 0 || info.ElementType is not { } element)
                {
                    return null;
                }

                type = element;
                rest = rest[(close + 1)..];
                continue;
            }

            if (rest[0] != '.')
            {
                return null;
            }

            var end = rest[1..].IndexOfAny('.', '[');
            var name = (end < 0 ? rest[1..] : rest[1..(end + 1)]).ToString();
            rest = end < 0 ? [] : rest[(end + 1)..];
            if (info.Kind == JsonTypeInfoKind.Dictionary && info.ElementType is { } value)
            {
                type = value;
            }
            // Named as the body wrote it: read case-insensitively ("Priority" for priority), the path has its spelling.
            else if (info.Kind == JsonTypeInfoKind.Object && info.Properties.FirstOrDefault(p => string.Equals(p.Name, name, comparison)) is { } property)
            {
                type = property.PropertyType;
            }
            else
            {
                return null;
            }
        }

        return Kind(type, plural: false, options);
    }

    private static string Kind(Type type, bool plural, JsonSerializerOptions options)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        string One(string singular, string many) => plural ? many : singular;
        if (type == typeof(string))
        {
            return One("a string", "strings");
        }

        if (type == typeof(bool))
        {
            return One("true or false", "booleans");
        }

        if (type == typeof(int) || type == typeof(long) || type == typeof(uint) || type == typeof(ulong) || type == typeof(short))
        {
            return One("a whole number", "whole numbers");
        }

        if (type == typeof(double) || type == typeof(float) || type == typeof(decimal))
        {
            return One("a number", "numbers");
        }

        if (type == typeof(DateTimeOffset) || type == typeof(DateTime))
        {
            return One("an RFC 3339 time", "RFC 3339 times");
        }

        var info = options.GetTypeInfo(type);
        return info.Kind switch
        {
            JsonTypeInfoKind.Enumerable when info.ElementType is { } element => One($"an array of {Kind(element, plural: true, options)}", "arrays"),
            JsonTypeInfoKind.Dictionary when info.ElementType is { } value => One($"an object of {Kind(value, plural: true, options)}", "objects"),
            _ => One("a JSON object", "JSON objects"),
        };
    }

    /// <summary><see cref="Describe(JsonException, Type, JsonSerializerOptions)"/> for what System.Text.Json throws on a
    /// bad message: a <see cref="JsonException"/>, or the <see cref="InvalidOperationException"/> of a string that is not
    /// valid UTF-8 (its own message).</summary>
    public static string Describe(Exception ex, Type body, JsonSerializerOptions options) =>
        ex is JsonException json ? Describe(json, body, options) : ex.Message;
}
