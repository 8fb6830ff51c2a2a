using System.Globalization;
using System.Text;

namespace Propeller.Cli.Output;

/// <summary>
/// Text from the manager made safe to print on one line: an error's text comes from validators (several joined with
/// line breaks), a Wasm guest or a plugin, and printed as it was it could break the one-line-per-error rule (docs/cli.md)
/// or drive the terminal (ESC sequences that recolour, move the cursor or retitle the window).
/// </summary>
internal static class Printable
{
    /// <summary>Line endings (and tabs) become spaces; every other control character (C0, DEL, C1) is shown as <c>\uXXXX</c>.</summary>
    public static string Line(string text)
    {
        var line = text.ReplaceLineEndings(" ").Replace('\t', ' ');
        if (!line.Any(char.IsControl))
        {
            return line;
        }

        var printable = new StringBuilder(line.Length + 16);
        foreach (var c in line)
        {
            if (char.IsControl(c))
            {
                printable.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                printable.Append(c);
            }
        }

        return printable.ToString();
    }
}
