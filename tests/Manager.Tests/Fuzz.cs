using System.Text.Json.Nodes;

namespace Propeller.Manager.Tests;

/// <summary>What the seeded fuzz tests draw from (Http/ApiFuzzTests, Dispatch/DispatchTests.Fuzz): strings that have
/// broken parsers before, JSON of any shape, and JSON text made invalid.</summary>
internal static class Fuzz
{
    public static readonly string[] Strings =
    [
        "", "a", "fuzz", " ", "\u0000", "\t\n", "é漢字🙂", "../../etc/passwd", "%", "{", "null", "true", "-1", "0", "1", "100", "101",
        "1000", "1001", "18446744073709551616", "1e999", "*/5 * * * *", "0 0 * * *", "@every 1s", "2026-12-05T10:00:00Z", "not-a-date",
        "5s", "61s", "AGFzbQEAAAA=", "AGFzbQEAAAA", "not base64!", "pending", "running", "newest", "oldest", "task", "proplet",
        "task,proplet", "{\"k\":\"v\"}", "[]", "{}", "alive", "offline", new string('x', 5000),
    ];

    /// <summary>Any JSON value (null, a bool, a number at the edges, a string of <see cref="Strings"/>, nested arrays and objects).</summary>
    public static JsonNode? AnyValue(Random random, int depth) => random.Next(depth > 4 ? 5 : 7) switch
    {
        0 => null,
        1 => JsonValue.Create(random.Next(2) == 0),
        2 => JsonValue.Create(Pick(random, new[] { 0, -1, 1, int.MaxValue })),
        3 => JsonValue.Create(1.5e308),
        4 => JsonValue.Create(Pick(random, Strings)),
        5 => new JsonArray(AnyValue(random, depth + 1), AnyValue(random, depth + 1)),
        _ => new JsonObject { [Pick(random, Strings)] = AnyValue(random, depth + 1) },
    };

    /// <summary>Usually the JSON as built; sometimes truncated, with a character changed, wrapped, deeply nested or not JSON at all.</summary>
    public static string Mutate(string text, Random random) => random.Next(12) switch
    {
        0 => text[..random.Next(text.Length + 1)],
        1 when text.Length > 0 => text.Remove(random.Next(text.Length), 1).Insert(random.Next(text.Length), ((char)random.Next(0, 128)).ToString()),
        2 => "[" + text + "]",
        3 => new string('[', 2000) + new string(']', 2000),
        4 => Pick(random, Strings),
        _ => text,
    };

    public static T Pick<T>(Random random, IReadOnlyList<T> items) => items[random.Next(items.Count)];
}
