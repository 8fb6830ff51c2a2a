using System.Globalization;
using System.Text;

namespace Propeller.Contracts.Configuration;

/// <summary>
/// The subset of TOML the original's config.toml files use: <c>[table]</c> headers (dotted names allowed), and
/// <c>key = value</c> pairs whose value is a basic or literal string, an integer, a float or a boolean; <c>#</c>
/// comments. Anything else is an error naming the line, never a silent skip. Keys are <c>table.key</c>.
/// </summary>
public static class TomlFile
{
    public static IReadOnlyDictionary<string, string> Parse(string text, string source = "config.toml")
    {
        ArgumentNullException.ThrowIfNull(text);
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var table = "";
        var lines = text.Split('\n');
        for (var n = 0; n < lines.Length; n++)
        {
            var line = StripComment(lines[n]).Trim();
            if (line.Length == 0)
            {
                continue;
            }

            string Fail(string why) => throw new FormatException($"{source}:{n + 1}: {why}");

            if (line[0] == '[')
            {
                if (!line.EndsWith(']') || line.StartsWith("[[", StringComparison.Ordinal))
                {
                    Fail("a table header must look like [name]");
                }

                table = line[1..^1].Trim();
                if (table.Length == 0 || !table.Split('.').All(IsBareKey))
                {
                    Fail($"invalid table name '{table}'");
                }

                continue;
            }

            var eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                Fail("expected key = value");
            }

            var key = line[..eq].Trim();
            if (!IsBareKey(key))
            {
                Fail($"invalid key '{key}'");
            }

            var full = table.Length == 0 ? key : $"{table}.{key}";
            if (!values.TryAdd(full, Value(line[(eq + 1)..].Trim(), Fail)))
            {
                Fail($"'{full}' is defined twice");
            }
        }

        return values;
    }

    private static string Value(string raw, Func<string, string> fail)
    {
        if (raw.Length == 0)
        {
            return fail("a value is missing");
        }

        if (raw[0] == '\'')
        {
            return raw.Length >= 2 && raw[^1] == '\'' && raw.IndexOf('\'', 1) == raw.Length - 1 ? raw[1..^1] : fail("unterminated literal string");
        }

        if (raw[0] == '"')
        {
            var text = new StringBuilder();
            for (var i = 1; i < raw.Length; i++)
            {
                var c = raw[i];
                if (c == '"')
                {
                    return i == raw.Length - 1 ? text.ToString() : fail("unexpected text after a string");
                }

                if (c != '\\')
                {
                    text.Append(c);
                    continue;
                }

                if (++i >= raw.Length)
                {
                    break;
                }

                switch (raw[i])
                {
                    case '"': text.Append('"'); break;
                    case '\\': text.Append('\\'); break;
                    case 'n': text.Append('\n'); break;
                    case 't': text.Append('\t'); break;
                    case 'r': text.Append('\r'); break;
                    case 'u' when i + 4 < raw.Length && int.TryParse(raw.AsSpan(i + 1, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code):
                        text.Append((char)code);
                        i += 4;
                        break;
                    default: return fail($"unknown escape \\{raw[i]}");
                }
            }

            return fail("unterminated string");
        }

        if (raw is "true" or "false")
        {
            return raw;
        }

        var number = raw.Replace("_", "", StringComparison.Ordinal);
        return long.TryParse(number, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)
            || double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out _)
            ? number
            : fail($"unsupported value '{raw}' (strings must be quoted)");
    }

    private static bool IsBareKey(string key) =>
        key.Length > 0 && key.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');

    private static string StripComment(string line)
    {
        var quote = '\0';
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (quote != '\0')
            {
                if (c == '\\' && quote == '"')
                {
                    i++;
                }
                else if (c == quote)
                {
                    quote = '\0';
                }
            }
            else if (c is '"' or '\'')
            {
                quote = c;
            }
            else if (c == '#')
            {
                return line[..i];
            }
        }

        return line;
    }
}
