using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Propeller.Cli.Output;

/// <summary>How the CLI shows the manager's JSON to people: plain-text cells (never markup, made printable), states by name, ages.</summary>
internal static class Tables
{
    private static readonly string[] StateNames = ["pending", "scheduled", "running", "completed", "failed", "skipped", "interrupted"];

    public static string StateName(int state) => state >= 0 && state < StateNames.Length ? StateNames[state] : state.ToString(CultureInfo.InvariantCulture);

    public static string StateName(JsonElement task) => task.TryGetProperty("state", out var s) && s.TryGetInt32(out var state) ? StateName(state) : "?";

    /// <summary>Completed, failed, skipped or interrupted: the attempt has ended.</summary>
    public static bool Ended(JsonElement task) => task.TryGetProperty("state", out var s) && s.TryGetInt32(out var state) && state >= 3;

    public static string Str(JsonElement value, string name) =>
        value.ValueKind == JsonValueKind.Object && value.TryGetProperty(name, out var p)
            ? p.ValueKind switch { JsonValueKind.String => p.GetString()!, JsonValueKind.Null => "", _ => p.GetRawText() }
            : "";

    /// <summary>A time as the manager sends it, or empty for the zero time.</summary>
    public static DateTimeOffset? Time(JsonElement value, string name) =>
        Str(value, name) is { Length: > 0 } text && !text.StartsWith("0001-01-01", StringComparison.Ordinal)
        && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time) ? time : null;

    public static string Age(DateTimeOffset? time, DateTimeOffset now)
    {
        if (time is not { } t)
        {
            return "";
        }

        var age = now - t;
        return age.TotalSeconds < 1 ? "now"
            : age.TotalMinutes < 1 ? $"{(int)age.TotalSeconds}s"
            : age.TotalHours < 1 ? $"{(int)age.TotalMinutes}m"
            : age.TotalDays < 1 ? $"{(int)age.TotalHours}h"
            : $"{(int)age.TotalDays}d";
    }

    public static string Stamp(DateTimeOffset? time) => time?.ToString("yyyy-MM-dd HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture) ?? "";

    /// <summary>A table whose cells are plain text.</summary>
    public static Table Create(params string[] columns)
    {
        var table = new Table().Border(TableBorder.Simple);
        foreach (var column in columns)
        {
            table.AddColumn(new TableColumn(new Text(column)));
        }

        return table;
    }

    /// <summary>
    /// A row of plain-text cells, each made printable (<see cref="Printable.Line"/>): names, ids, image URLs, a proplet's
    /// metadata and a plugin's reasons come from users, edge devices and plugins, and Spectre writes a cell's control
    /// characters (ESC sequences that recolour, move the cursor or retitle the window) to the terminal as they are.
    /// </summary>
    public static void Row(Table table, params string[] cells) => table.AddRow(cells.Select(c => (IRenderable)new Text(Printable.Line(c))).ToArray());

    /// <summary>A two-column table of a single object's fields.</summary>
    public static Table Fields(IEnumerable<(string Name, string Value)> fields)
    {
        var table = new Table().Border(TableBorder.None).HideHeaders().AddColumn("field").AddColumn("value");
        foreach (var (name, value) in fields)
        {
            if (value.Length > 0)
            {
                Row(table, name, value);
            }
        }

        return table;
    }

    /// <summary>A task's results as text: a string as it is, anything else as JSON.</summary>
    public static string Results(JsonElement task) => Str(task, "results");
}
