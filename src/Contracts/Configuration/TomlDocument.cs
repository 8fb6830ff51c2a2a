using System.Globalization;
using System.Text;

namespace Propeller.Contracts.Configuration;

/// <summary>
/// The small TOML subset config.toml needs (no TOML package is available here): <c>[section]</c> headers (dotted names
/// kept as one string), <c>key = value</c> with basic ("…", escapes) or literal ('…') strings, integers, floats and
/// booleans, and <c>#</c> comments. Arrays, inline tables and multi-line strings are refused with the line number.
/// Keys before the first header belong to the section "".
/// </summary>
public sealed class TomlDocument
{
    private readonly Dictionary<string, Dictionary<string, object>> _sections = new(StringComparer.Ordinal);

    private TomlDocument()
    {
    }

    public IReadOnlyCollection<string> Sections => _sections.Keys;

    /// <summary>The keys of <paramref name="section"/>, or null when the file has no such section.</summary>
    public IReadOnlyDictionary<string, object>? Section(string section) => _sections.GetValueOrDefault(section);

    public static TomlDocument Load(string path) => Load(path, null);

    /// <summary>
    /// Reads <paramref name="path"/>; with <paramref name="onlySection"/>, only that table is parsed and the lines of every
    /// other one are skipped unread, so TOML this reader does not handle (arrays, inline tables) elsewhere in a shared
    /// config.toml does not fail a host that needs one table of it.
    /// </summary>
    public static TomlDocument Load(string path, string? onlySection)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TomlException($"config file '{path}' not accessible: {ex.Message}", ex);
        }

        return Parse(text, path, onlySection);
    }

    public static TomlDocument Parse(string text, string source = "config.toml", string? onlySection = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var document = new TomlDocument();
        var current = document.SectionFor("");
        var skipping = onlySection is not null && onlySection.Length != 0;
        var lineNumber = 0;
        foreach (var rawLine in text.Split('\n'))
        {
            lineNumber++;
            var line = rawLine.TrimEnd('\r').Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            string Where() => $"{source}:{lineNumber}";
            if (line[0] == '[')
            {
                var close = line.IndexOf(']', StringComparison.Ordinal);
                if (skipping && line.StartsWith("[[", StringComparison.Ordinal))
                {
                    continue; // an array of tables: not a table we read
                }

                if (line.StartsWith("[[", StringComparison.Ordinal) || close < 0 || StripComment(line[(close + 1)..]).Length != 0)
                {
                    // Skipped: a line of a multi-line array in a table we do not read.
                    if (skipping)
                    {
                        continue;
                    }

                    throw new TomlException($"{Where()}: expected a section header like [proplet]");
                }

                var name = line[1..close].Trim();
                if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
                {
                    if (skipping)
                    {
                        continue;
                    }

                    throw new TomlException($"{Where()}: invalid section name '{name}'");
                }

                skipping = onlySection is not null && !string.Equals(name, onlySection, StringComparison.Ordinal);
                if (!skipping)
                {
                    current = document.SectionFor(name);
                }

                continue;
            }

            if (skipping)
            {
                continue;
            }

            var equals = line.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw new TomlException($"{Where()}: expected key = value");
            }

            var key = line[..equals].Trim();
            if (key.Length >= 2 && key[0] == '"' && key[^1] == '"')
            {
                key = key[1..^1];
            }
            else if (key.Length == 0 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            {
                throw new TomlException($"{Where()}: invalid key '{key}'");
            }

            if (current.ContainsKey(key))
            {
                throw new TomlException($"{Where()}: duplicate key '{key}'");
            }

            current[key] = ParseValue(line[(equals + 1)..].Trim(), Where());
        }

        return document;
    }

    private Dictionary<string, object> SectionFor(string name)
    {
        if (!_sections.TryGetValue(name, out var section))
        {
            section = new Dictionary<string, object>(StringComparer.Ordinal);
            _sections[name] = section;
        }

        return section;
    }

    private static object ParseValue(string text, string where)
    {
        if (text.Length == 0)
        {
            throw new TomlException($"{where}: missing value after '='");
        }

        if (text[0] == '"' || text[0] == '\'')
        {
            var (value, end) = text[0] == '"' ? ReadBasic(text, where) : ReadLiteral(text, where);
            if (StripComment(text[end..]).Length != 0)
            {
                throw new TomlException($"{where}: unexpected text after the string");
            }

            return value;
        }

        var bare = StripComment(text);
        if (bare.StartsWith('[') || bare.StartsWith('{'))
        {
            throw new TomlException($"{where}: arrays and inline tables are not supported here; use a string");
        }

        if (bare is "true" or "false")
        {
            return bare == "true";
        }

        var digits = bare.Replace("_", "", StringComparison.Ordinal);
        if (long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            return integer;
        }

        if (double.TryParse(digits, NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
        {
            return number;
        }

        throw new TomlException($"{where}: cannot read value '{bare}' (strings need quotes)");
    }

    private static string StripComment(string text)
    {
        var hash = text.IndexOf('#', StringComparison.Ordinal);
        return (hash < 0 ? text : text[..hash]).Trim();
    }

    private static (string Value, int End) ReadLiteral(string text, string where)
    {
        var close = text.IndexOf('\'', 1);
        return close < 0 ? throw new TomlException($"{where}: unterminated string") : (text[1..close], close + 1);
    }

    private static (string Value, int End) ReadBasic(string text, string where)
    {
        var builder = new StringBuilder();
        for (var i = 1; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '"')
            {
                return (builder.ToString(), i + 1);
            }

            if (c != '\\')
            {
                builder.Append(c);
                continue;
            }

            if (++i >= text.Length)
            {
                break;
            }

            switch (text[i])
            {
                case '"': builder.Append('"'); break;
                case '\\': builder.Append('\\'); break;
                case 'n': builder.Append('\n'); break;
                case 't': builder.Append('\t'); break;
                case 'r': builder.Append('\r'); break;
                case 'b': builder.Append('\b'); break;
                case 'f': builder.Append('\f'); break;
                case 'u' or 'U':
                    {
                        var length = text[i] == 'u' ? 4 : 8;
                        if (i + length >= text.Length
                            || !int.TryParse(text.AsSpan(i + 1, length), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code)
                            || code is < 0 or > 0x10FFFF or (>= 0xD800 and <= 0xDFFF))
                        {
                            throw new TomlException($"{where}: invalid \\{text[i]} escape");
                        }

                        builder.Append(char.ConvertFromUtf32(code));
                        i += length;
                        break;
                    }

                default:
                    throw new TomlException($"{where}: invalid escape \\{text[i]}");
            }
        }

        throw new TomlException($"{where}: unterminated string");
    }
}
