using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;
using Propeller.Cli.Output;
using Propeller.Cli.Tasks;

namespace Propeller.Cli.Proplets;

/// <summary><c>propeller proplet list|get</c>.</summary>
internal static class PropletCommands
{
    public static Command Build(CommandActions actions)
    {
        var proplet = new Command("proplet", "Inspect the proplets (edge workers)");
        proplet.Subcommands.Add(List(actions));
        proplet.Subcommands.Add(Get(actions));
        return proplet;
    }

    private static Command List(CommandActions actions)
    {
        var status = new Option<string?>("--status") { Description = "Only alive (active) or offline (inactive) proplets" };
        status.AcceptOnlyFromAmong("active", "inactive");
        var offset = Paging.Offset("proplets");
        var limit = Paging.Limit("proplets", 100);
        var command = new Command("list", "List the proplets: alive or offline, running tasks, last heartbeat") { status, offset, limit };
        actions.Set(
            command,
            (context, parse, cancellationToken) => context.Manager.GetAsync(
                "/proplets?offset=" + parse.GetValue(offset).ToString(CultureInfo.InvariantCulture)
                + "&limit=" + parse.GetValue(limit).ToString(CultureInfo.InvariantCulture)
                + (parse.GetValue(status) is { } s ? "&status=" + s : ""),
                cancellationToken),
            (context, page) =>
            {
                // Everything read before anything is printed: an answer of another shape prints no part of a table.
                var now = DateTimeOffset.UtcNow;
                var table = Tables.Create("ID", "NAME", "ALIVE", "TASKS", "LAST HEARTBEAT");
                var proplets = page.GetProperty("proplets").EnumerateArray().ToList();
                var total = page.GetProperty("total").GetInt64();
                var from = page.TryGetProperty("offset", out var o) ? o.GetInt64() : 0;
                foreach (var p in proplets)
                {
                    Tables.Row(table, Tables.Str(p, "id"), Tables.Str(p, "name"), Alive(p), Tables.Str(p, "task_count"), Heartbeat(p, now));
                }

                context.Console.Write(table);
                context.Output.WriteLine(
                    proplets.Count == 0 ? $"no proplets ({total} in all)"
                    : from == 0 && proplets.Count == total ? $"{total} proplet(s)"
                    : $"{from + 1}-{from + proplets.Count} of {total} proplets");
            });
        return command;
    }

    private static Command Get(CommandActions actions)
    {
        var id = new Argument<string>("id") { Description = "The proplet's id", Validators = { TaskCommands.RefuseEmpty("the proplet id"), RefuseDotSegment } };
        var command = new Command("get", "Show a proplet: liveness, metadata, its latest CPU and memory, its running tasks") { id };
        actions.Set(command, async (context, parse, cancellationToken) =>
        {
            var key = Uri.EscapeDataString(parse.GetValue(id)!);
            var proplet = await context.Manager.GetAsync($"/proplets/{key}", cancellationToken);
            var metrics = await context.Manager.GetAsync($"/proplets/{key}/metrics?limit=1", cancellationToken);
            var tasks = await context.Manager.GetAsync($"/tasks?limit=100&state=running&proplet_id={key}", cancellationToken);
            var latest = metrics.TryGetProperty("metrics", out var list) && list.GetArrayLength() > 0 ? list[0] : default;
            if (context.Json)
            {
                context.WriteJson(new { proplet, metrics = latest.ValueKind == JsonValueKind.Undefined ? (JsonElement?)null : latest, tasks = tasks.GetProperty("tasks") });
                return 0;
            }

            var meta = proplet.GetProperty("metadata");
            var running = tasks.GetProperty("tasks").EnumerateArray().ToList(); // read before anything is printed
            context.Console.Write(Tables.Fields(
            [
                ("id", Tables.Str(proplet, "id")),
                ("name", Tables.Str(proplet, "name")),
                ("alive", Alive(proplet)),
                ("last heartbeat", Heartbeat(proplet, DateTimeOffset.UtcNow)),
                ("running tasks", Tables.Str(proplet, "task_count")),
                ("cpu", latest.ValueKind == JsonValueKind.Object && latest.TryGetProperty("cpu_metrics", out var cpu) ? Percent(cpu, "percent") : ""),
                ("memory", latest.ValueKind == JsonValueKind.Object && latest.TryGetProperty("memory_metrics", out var memory) ? Bytes(memory, "rss_bytes") + " rss" : ""),
                ("hostname", Tables.Str(meta, "hostname")),
                ("os", Tables.Str(meta, "os")),
                ("arch", Tables.Str(meta, "cpu_arch")),
                ("runtime", Tables.Str(meta, "wasm_runtime")),
                ("version", Tables.Str(meta, "proplet_version")),
            ]));
            if (running.Count > 0)
            {
                context.Console.Write(TaskFields.List(running, DateTimeOffset.UtcNow));
            }

            return 0;
        });
        return command;
    }

    private static string Alive(JsonElement proplet) => proplet.TryGetProperty("alive", out var alive) && alive.GetBoolean() ? "alive" : "offline";

    private static string Heartbeat(JsonElement proplet, DateTimeOffset now) =>
        Tables.Time(proplet, "last_alive_at") is { } at ? $"{Tables.Stamp(at)} ({Tables.Age(at, now)} ago)" : "never";

    /// <summary>A CPU share to one decimal (<c>84.3%</c>): the proplet sends it with every digit a double holds.</summary>
    private static string Percent(JsonElement value, string name) =>
        value.TryGetProperty(name, out var n) && n.ValueKind == JsonValueKind.Number && n.TryGetDouble(out var percent) ? percent.ToString("0.0", CultureInfo.InvariantCulture) + "%" : "";

    private static string Bytes(JsonElement value, string name) =>
        value.TryGetProperty(name, out var n) && n.TryGetDouble(out var bytes) ? (bytes / (1024 * 1024)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB" : "";

    /// <summary>"." and ".." would be resolved away as path segments (<c>/proplets/..</c> is the API's root): refused.</summary>
    private static void RefuseDotSegment(SymbolResult result)
    {
        if (result.Tokens.Count > 0 && result.Tokens[0].Value is "." or "..")
        {
            result.AddError($"the proplet id must not be '{result.Tokens[0].Value}'");
        }
    }
}
