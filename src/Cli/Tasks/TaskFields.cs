using System.Text.Json;
using Propeller.Cli.Output;
using Spectre.Console;

namespace Propeller.Cli.Tasks;

/// <summary>A task as a table (list rows and the detail of one).</summary>
internal static class TaskFields
{
    public static Table List(IEnumerable<JsonElement> tasks, DateTimeOffset now)
    {
        var table = Tables.Create("ID", "NAME", "STATE", "PROPLET", "AGE");
        foreach (var task in tasks)
        {
            Tables.Row(table, Tables.Str(task, "id"), Tables.Str(task, "name"), Tables.StateName(task), Tables.Str(task, "proplet_id"), Tables.Age(Tables.Time(task, "created_at"), now));
        }

        return table;
    }

    public static Table Detail(JsonElement task) => Tables.Fields(
    [
        ("id", Tables.Str(task, "id")),
        ("name", Tables.Str(task, "name")),
        ("state", Tables.StateName(task)),
        ("kind", Tables.Str(task, "kind")),
        ("proplet", Tables.Str(task, "proplet_id")),
        ("image_url", Tables.Str(task, "image_url")),
        ("inputs", task.TryGetProperty("inputs", out var inputs) && inputs.ValueKind == JsonValueKind.Array ? string.Join(",", inputs.EnumerateArray().Select(i => i.ToString())) : ""),
        ("metadata", Tables.Str(task, "metadata")),
        ("created", Tables.Stamp(Tables.Time(task, "created_at"))),
        ("started", Tables.Stamp(Tables.Time(task, "start_time"))),
        ("finished", Tables.Stamp(Tables.Time(task, "finish_time"))),
        ("results", Tables.Results(task)),
        ("error", Tables.Str(task, "error")), // made printable as every cell is (on one line: a guest's or a plugin's text)
    ]);
}
