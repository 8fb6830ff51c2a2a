using System.Text.Json;

namespace Propeller.Contracts.Tasks;

/// <summary>
/// A task's <c>monitoring_profile</c> as the original manager holds it (spec propeller-manager.md §2.1): its Go struct
/// of ten keys, none omitempty, so every key is written, a missing or <c>null</c> one with its zero value; keys match
/// case-insensitively and unknown ones are dropped, as Go's decoding does. A mistyped value is an error (Go: 400).
/// Our proplet and the Rust one require all ten keys (propeller-edge.md §4.4), which the client's text passed through
/// as it was did not always carry.
/// </summary>
public static class MonitoringProfileJson
{
    private static readonly string[] Flags =
    [
        "enabled", "collect_cpu", "collect_memory", "collect_disk_io", "collect_threads", "collect_file_descriptors",
        "export_to_mqtt", "retain_history",
    ];

    private static readonly string[] Numbers = ["interval", "history_size"];

    /// <summary>
    /// The profile in its full form (compact JSON, the spec's key order), or the error naming the first mistyped key.
    /// <c>interval</c> and <c>history_size</c> must be integers (Go: int64, no fraction or exponent) and, unlike the
    /// original, not negative: both proplets refuse a negative one, failing the task at its start.
    /// </summary>
    public static bool TryNormalize(JsonElement profile, out string? json, out string? error)
    {
        json = null;
        if (profile.ValueKind != JsonValueKind.Object)
        {
            error = "monitoring_profile must be a JSON object";
            return false;
        }

        var flags = new Dictionary<string, bool>(StringComparer.Ordinal);
        var numbers = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var property in profile.EnumerateObject())
        {
            // Go matches a key to a field case-insensitively; a later duplicate wins; null leaves the field alone.
            var value = property.Value;
            if (Array.Find(Flags, k => k.Equals(property.Name, StringComparison.OrdinalIgnoreCase)) is { } flag)
            {
                if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                {
                    flags[flag] = value.GetBoolean();
                }
                else if (value.ValueKind != JsonValueKind.Null)
                {
                    error = $"monitoring_profile.{flag} must be a boolean";
                    return false;
                }
            }
            else if (Array.Find(Numbers, k => k.Equals(property.Name, StringComparison.OrdinalIgnoreCase)) is { } number)
            {
                if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var n) && n >= 0)
                {
                    numbers[number] = n;
                }
                else if (value.ValueKind != JsonValueKind.Null)
                {
                    error = $"monitoring_profile.{number} must be a non-negative integer";
                    return false;
                }
            }
        }

        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteBoolean("enabled", flags.GetValueOrDefault("enabled"));
            writer.WriteNumber("interval", numbers.GetValueOrDefault("interval"));
            foreach (var flag in Flags.AsSpan(1))
            {
                writer.WriteBoolean(flag, flags.GetValueOrDefault(flag));
            }

            writer.WriteNumber("history_size", numbers.GetValueOrDefault("history_size"));
            writer.WriteEndObject();
        }

        json = System.Text.Encoding.UTF8.GetString(buffer.ToArray());
        error = null;
        return true;
    }

    /// <summary>
    /// A stored profile in its full form. Tasks created before the API normalised profiles hold the client's text;
    /// one that cannot be normalised is returned as it is (what was sent before).
    /// </summary>
    public static string? NormalizeStored(string? stored)
    {
        if (stored is null)
        {
            return null;
        }

        try
        {
            using var document = JsonDocument.Parse(stored);
            return TryNormalize(document.RootElement, out var json, out _) ? json : stored;
        }
        catch (JsonException)
        {
            return stored;
        }
    }
}
