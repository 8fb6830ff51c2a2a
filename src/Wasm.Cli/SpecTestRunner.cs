using System.Globalization;
using System.Text.Json;

namespace Propeller.Wasm.Cli;

/// <summary>
/// Runs wast2json output: every DIR/&lt;name&gt;/&lt;name&gt;.json. Each command counts once. Text-format modules and SIMD files
/// are skipped. Files on the known-failing list still run, but their commands count as skipped; a listed file that
/// now passes completely is reported so it can be taken off the list.
/// </summary>
internal static class SpecTestRunner
{
    internal const int MaxFailuresShown = 8;

    public static int Run(string directory, string? knownFailingPath, IReadOnlyCollection<string> only, TextWriter stdout, TextWriter stderr)
    {
        var knownFailing = knownFailingPath is null
            ? new HashSet<string>(StringComparer.Ordinal)
            : File.ReadAllLines(knownFailingPath)
                .Select(l => l.Split('#')[0].Trim())
                .Where(l => l.Length > 0)
                .ToHashSet(StringComparer.Ordinal);
        var names = Directory.GetDirectories(directory)
            .Select(Path.GetFileName)
            .OfType<string>()
            .Where(n => File.Exists(Path.Combine(directory, n, n + ".json")))
            .Where(n => only.Count == 0 || only.Contains(n))
            .Order(StringComparer.Ordinal)
            .ToList();
        using var engine = new Engine();
        long passed = 0, failed = 0, skipped = 0;
        var nowPassing = new List<string>();
        foreach (var name in names)
        {
            var file = Path.Combine(directory, name, name + ".json");
            if (name.StartsWith("simd_", StringComparison.Ordinal))
            {
                var count = CountCommands(file);
                skipped += count;
                stdout.WriteLine($"wasm-spec: 0 passed, 0 failed, {count} skipped ({name}: SIMD not supported yet)");
                continue;
            }

            var result = new SpecFile(engine, Path.Combine(directory, name), stderr).Run(file);
            if (knownFailing.Contains(name))
            {
                var total = result.Passed + result.Failed + result.Skipped;
                skipped += total;
                var note = result.Failed == 0 ? "known-failing list, but now passes: remove it from the list" : $"known failing, {result.Failed} failures";
                if (result.Failed == 0)
                {
                    nowPassing.Add(name);
                }

                stdout.WriteLine($"wasm-spec: 0 passed, 0 failed, {total} skipped ({name}: {note})");
                continue;
            }

            passed += result.Passed;
            failed += result.Failed;
            skipped += result.Skipped;
            stdout.WriteLine($"wasm-spec: {result.Passed} passed, {result.Failed} failed, {result.Skipped} skipped ({name})");
        }

        if (nowPassing.Count > 0)
        {
            stdout.WriteLine($"wasm-spec: now passing, remove from the known-failing list: {string.Join(' ', nowPassing)}");
        }

        stdout.WriteLine($"wasm-spec: {passed} passed, {failed} failed, {skipped} skipped");
        return failed == 0 ? 0 : 1;
    }

    private static int CountCommands(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
        return doc.RootElement.GetProperty("commands").GetArrayLength();
    }

    /// <summary>Expected and actual values compare by bits; NaN patterns per the spec's nan:canonical / nan:arithmetic.</summary>
    internal static bool Matches(JsonElement expected, Value actual)
    {
        var type = expected.GetProperty("type").GetString();
        var text = expected.TryGetProperty("value", out var v) ? v.GetString() : null;
        switch (type)
        {
            case "i32":
                return actual.Kind == ValueKind.I32 && (uint)actual.AsI32 == uint.Parse(text!, CultureInfo.InvariantCulture);
            case "i64":
                return actual.Kind == ValueKind.I64 && (ulong)actual.AsI64 == ulong.Parse(text!, CultureInfo.InvariantCulture);
            case "f32":
                {
                    if (actual.Kind != ValueKind.F32)
                    {
                        return false;
                    }

                    var bits = (uint)actual.Bits;
                    return text switch
                    {
                        "nan:canonical" => (bits & 0x7FFFFFFF) == 0x7FC00000,
                        "nan:arithmetic" => (bits & 0x7FC00000) == 0x7FC00000,
                        _ => bits == uint.Parse(text!, CultureInfo.InvariantCulture),
                    };
                }

            case "f64":
                {
                    if (actual.Kind != ValueKind.F64)
                    {
                        return false;
                    }

                    var bits = (ulong)actual.Bits;
                    return text switch
                    {
                        "nan:canonical" => (bits & 0x7FFFFFFFFFFFFFFF) == 0x7FF8000000000000,
                        "nan:arithmetic" => (bits & 0x7FF8000000000000) == 0x7FF8000000000000,
                        _ => bits == ulong.Parse(text!, CultureInfo.InvariantCulture),
                    };
                }

            case "funcref":
                return actual.Kind == ValueKind.FuncRef && (text == "null" ? actual.Reference is null : actual.Reference is not null);
            case "externref":
                return actual.Kind == ValueKind.ExternRef && (text == "null"
                    ? actual.Reference is null
                    : Equals(actual.Reference, ulong.Parse(text!, CultureInfo.InvariantCulture)));
            default:
                return false;
        }
    }

    internal static Value ParseArgument(JsonElement arg)
    {
        var type = arg.GetProperty("type").GetString();
        var text = arg.GetProperty("value").GetString()!;
        return type switch
        {
            "i32" => Value.I32((int)uint.Parse(text, CultureInfo.InvariantCulture)),
            "i64" => Value.I64((long)ulong.Parse(text, CultureInfo.InvariantCulture)),
            "f32" => Value.F32Bits((int)uint.Parse(text, CultureInfo.InvariantCulture)),
            "f64" => Value.F64Bits((long)ulong.Parse(text, CultureInfo.InvariantCulture)),
            "funcref" => Value.FuncRef(null),
            "externref" => Value.ExternRef(text == "null" ? null : ulong.Parse(text, CultureInfo.InvariantCulture)),
            _ => throw new FormatException($"unsupported argument type {type}"),
        };
    }
}
