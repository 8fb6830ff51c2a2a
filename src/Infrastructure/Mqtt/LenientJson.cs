using System.Text.Json;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Reads a proplet's message as the original manager did (it took each field it wanted by a type assertion): a field
/// of the wrong type is left out, and the message is read without it, rather than the whole message being dropped (a
/// result with <c>"attempt": "2"</c> or <c>"proplet_id": 7</c> was lost, and its task waited for ever). What the
/// message then lacks is checked as before (a result without a task_id is still malformed). A payload that is not a
/// JSON object, or not JSON, still throws.
/// </summary>
internal static class LenientJson
{
    /// <summary>
    /// <paramref name="payload"/> as <typeparamref name="T"/>; <paramref name="ignored"/> names the top-level fields left
    /// out for their type (empty on the usual path, which reads the payload once, as before).
    /// </summary>
    public static T? Deserialize<T>(ReadOnlySpan<byte> payload, out IReadOnlyList<string> ignored)
    {
        ignored = [];
        try
        {
            return JsonSerializer.Deserialize<T>(payload);
        }
        catch (JsonException first) when (first.Path == "$" && NotAnObject(payload) is { } kind)
        {
            // Rather than "The JSON value could not be converted to Propeller.Contracts.Mqtt.ResultMessage. Path: $".
            throw new JsonException($"the payload must be a JSON object, not {kind}", first);
        }
        catch (JsonException first) when (Field(first.Path) is not null)
        {
            // The fields by name, the last of a name kept (as the usual read keeps it); a field that fails is left out
            // whole, however often it appears.
            using var document = JsonDocument.Parse(payload.ToArray());
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw;
            }

            var fields = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var field in document.RootElement.EnumerateObject())
            {
                fields[field.Name] = field.Value;
            }

            var left = new List<string>();
            ignored = left;
            for (var error = first; ;)
            {
                if (Field(error.Path) is not { } name || !fields.Remove(name))
                {
                    throw error;
                }

                left.Add(name);
                try
                {
                    return JsonSerializer.Deserialize<T>(JsonSerializer.SerializeToUtf8Bytes(fields));
                }
                catch (JsonException next)
                {
                    error = next;
                }
            }
        }
    }

    /// <summary>What <paramref name="payload"/> holds instead of an object ("an array", ...), or null when it is one or is
    /// not JSON (the reader's own error then says where).</summary>
    private static string? NotAnObject(ReadOnlySpan<byte> payload)
    {
        var reader = new Utf8JsonReader(payload);
        try
        {
            return reader.Read() ? reader.TokenType switch
            {
                JsonTokenType.StartObject => null,
                JsonTokenType.StartArray => "an array",
                JsonTokenType.String => "a string",
                JsonTokenType.Number => "a number",
                JsonTokenType.True or JsonTokenType.False => "a boolean",
                _ => null,
            } : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The top-level field a <see cref="JsonException.Path"/> names (<c>$.attempt</c>, <c>$.tags[0]</c>,
    /// <c>$['odd name']</c>), or null for the root.</summary>
    internal static string? Field(string? path)
    {
        if (path is null || path.Length < 3 || path[0] != '$')
        {
            return null;
        }

        if (path[1] == '.')
        {
            var end = path.AsSpan(2).IndexOfAny('.', '[');
            return end < 0 ? path[2..] : path[2..(2 + end)];
        }

        if (path.StartsWith("$['", StringComparison.Ordinal) && path.IndexOf("']", 3, StringComparison.Ordinal) is var close and > 3)
        {
            return path[3..close];
        }

        return null;
    }
}
