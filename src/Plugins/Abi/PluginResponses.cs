using System.Text.Json;
using Propeller.Application.EventStore;

namespace Propeller.Plugins.Abi;

/// <summary>An allow-bearing answer: authorize, on_before_proplet_select and on_before_dispatch (and proplet authorize).</summary>
internal sealed record AllowAnswer(bool Allow, string? Reason, IReadOnlyList<string> RequiredTags, ulong MinMemoryBytes, IReadOnlyDictionary<string, string>? ExtraEnv);

/// <summary>An <c>enrich_task</c> (or proplet <c>enrich</c>) answer; null members were absent.</summary>
internal sealed record EnrichAnswer(IReadOnlyDictionary<string, string>? Env, int? Priority, IReadOnlyList<string>? Inputs, string? ImageUrl);

/// <summary>
/// Reads plugin answers like the original's Go decoder: unknown keys ignored, a missing <c>allow</c> is false, a
/// zero-length answer or JSON <c>null</c> is the zero value (so it denies). A value of the wrong type, bytes that are
/// not JSON, and strings or keys that do not decode (invalid UTF-8, an unpaired surrogate escape such as <c>\ud800</c>,
/// which the parser lets through until the string is read) are malformed: <see cref="FormatException"/> with the reason.
/// </summary>
internal static class PluginResponses
{
    /// <summary>The largest answer a hook may give; a larger one is malformed (it is not even copied out).</summary>
    public const int MaxAnswerBytes = 1 << 20;

    /// <summary>The longest deny reason or job error kept (it goes into events, the task and job history).</summary>
    public const int MaxReasonChars = 4096;

    /// <summary>The most of a plugin's answer key that an error message repeats.</summary>
    private const int MaxShownKeyChars = 64;

    /// <summary>Appended to a reason cut at <see cref="MaxReasonChars"/>.</summary>
    public const string TruncatedMarker = "… (truncated)";

    private static readonly AllowAnswer Deny = new(false, null, [], 0, null);

    /// <summary><paramref name="text"/> cut at <see cref="MaxReasonChars"/> (never inside a surrogate pair) and marked.</summary>
    internal static string Truncate(string text)
    {
        if (text.Length <= MaxReasonChars)
        {
            return text;
        }

        var cut = char.IsHighSurrogate(text[MaxReasonChars - 1]) ? MaxReasonChars - 1 : MaxReasonChars;
        return string.Concat(text.AsSpan(0, cut), TruncatedMarker);
    }

    public static AllowAnswer Allow(byte[]? bytes) => Decode(bytes, ReadAllow);

    public static EnrichAnswer Enrich(byte[]? bytes) => Decode(bytes, ReadEnrich);

    /// <summary>A job's answer: success unless it has a non-empty <c>"error"</c> string.</summary>
    public static string? JobError(byte[]? bytes) => Decode(bytes, ReadJobError);

    /// <summary>
    /// Parses and reads an answer. Reading a string or a key that does not decode throws
    /// <see cref="InvalidOperationException"/> from System.Text.Json: it is a malformed answer like any other.
    /// </summary>
    private static T Decode<T>(byte[]? bytes, Func<JsonDocument?, T> read)
    {
        using var document = Parse(bytes);
        try
        {
            if (document is not null && StorableText.Problem(document.RootElement) is { } problem)
            {
                // PostgreSQL cannot store it in the events the answer goes into, and failing there can leave a pooled
                // connection out of step with the server (StorableText).
                throw new FormatException($"malformed JSON answer: its values {problem}");
            }

            return read(document);
        }
        catch (InvalidOperationException e)
        {
            throw new FormatException($"malformed JSON answer: {e.Message}", e);
        }
    }

    private static AllowAnswer ReadAllow(JsonDocument? document)
    {
        if (document is null || document.RootElement.ValueKind == JsonValueKind.Null)
        {
            return Deny;
        }

        var root = Object(document.RootElement);
        var allow = false;
        string? reason = null;
        List<string> tags = [];
        ulong minMemory = 0;
        Dictionary<string, string>? extraEnv = null;
        foreach (var property in root.EnumerateObject())
        {
            var value = property.Value;
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            switch (Key(property))
            {
                case "allow":
                    allow = value.ValueKind switch
                    {
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        _ => throw new FormatException($"\"allow\" must be a boolean, got {value.ValueKind}"),
                    };
                    break;
                case "reason":
                    reason = String(value, "reason");
                    break;
                case "required_tags":
                    tags = Strings(value, "required_tags");
                    break;
                case "min_memory_bytes":
                    minMemory = value.ValueKind == JsonValueKind.Number && value.TryGetUInt64(out var bytesValue)
                        ? bytesValue
                        : throw new FormatException("\"min_memory_bytes\" must be an unsigned integer");
                    break;
                case "extra_env":
                    extraEnv = Map(value, "extra_env");
                    break;
            }
        }

        return new AllowAnswer(allow, string.IsNullOrEmpty(reason) ? null : Truncate(reason), tags, minMemory, extraEnv);
    }

    private static EnrichAnswer ReadEnrich(JsonDocument? document)
    {
        if (document is null || document.RootElement.ValueKind == JsonValueKind.Null)
        {
            return new EnrichAnswer(null, null, null, null);
        }

        var root = Object(document.RootElement);
        Dictionary<string, string>? env = null;
        int? priority = null;
        List<string>? inputs = null;
        string? imageUrl = null;
        foreach (var property in root.EnumerateObject())
        {
            var value = property.Value;
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            switch (Key(property))
            {
                case "env":
                    env = Map(value, "env");
                    break;
                case "priority":
                    priority = value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var p)
                        ? p
                        : throw new FormatException("\"priority\" must be an integer");
                    break;
                case "inputs":
                    inputs = Strings(value, "inputs");
                    break;
                case "image_url":
                    imageUrl = String(value, "image_url");
                    break;
            }
        }

        return new EnrichAnswer(env, priority, inputs, imageUrl);
    }

    private static string? ReadJobError(JsonDocument? document)
    {
        if (document is null || document.RootElement.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        string? text = null;
        foreach (var property in Object(document.RootElement).EnumerateObject())
        {
            if (Key(property) == "error" && property.Value.ValueKind != JsonValueKind.Null)
            {
                text = String(property.Value, "error");
            }
        }

        return text is { Length: > 0 } ? Truncate(text) : null;
    }

    /// <summary>Which answer key <paramref name="property"/> is: matched without regard to case, as the original's Go
    /// decoder (encoding/json) matches keys to its fields, so <c>{"Allow":true}</c> (a TinyGo plugin's untagged struct)
    /// allows there and here. A key given twice, in any case, counts as its last value, as there.</summary>
    private static string Key(JsonProperty property) => property.Name.ToLowerInvariant();

    private static JsonDocument? Parse(byte[]? bytes)
    {
        if (bytes is null || bytes.Length == 0)
        {
            return null;
        }

        try
        {
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new FormatException($"malformed JSON answer: {e.Message}", e);
        }
    }

    private static JsonElement Object(JsonElement element) => element.ValueKind == JsonValueKind.Object
        ? element
        : throw new FormatException($"expected a JSON object, got {element.ValueKind}");

    private static string String(JsonElement value, string name) => value.ValueKind == JsonValueKind.String
        ? value.GetString()!
        : throw new FormatException($"\"{name}\" must be a string, got {value.ValueKind}");

    private static List<string> Strings(JsonElement value, string name)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw new FormatException($"\"{name}\" must be an array of strings, got {value.ValueKind}");
        }

        var list = new List<string>(value.GetArrayLength());
        foreach (var item in value.EnumerateArray())
        {
            list.Add(String(item, name));
        }

        return list;
    }

    private static Dictionary<string, string> Map(JsonElement value, string name)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException($"\"{name}\" must be an object of strings, got {value.ValueKind}");
        }

        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in value.EnumerateObject())
        {
            map[property.Name] = String(property.Value, name + "." + Shown(property.Name));
        }

        return map;
    }

    /// <summary>A plugin's key as an error names it: at most <see cref="MaxShownKeyChars"/> of it. An answer of 1 MiB
    /// with one key put the whole key into the failure reason, and with it into the task's error, events and logs.</summary>
    private static string Shown(string key) =>
        key.Length <= MaxShownKeyChars
            ? key
            : string.Concat(key.AsSpan(0, char.IsHighSurrogate(key[MaxShownKeyChars - 1]) ? MaxShownKeyChars - 1 : MaxShownKeyChars), TruncatedMarker);
}
