using System.CommandLine;
using System.Text.Json;
using Propeller.Cli.Output;

namespace Propeller.Cli.Plugins;

/// <summary><c>propeller plugin list|reload</c>.</summary>
internal static class PluginCommands
{
    public static Command Build(CommandActions actions)
    {
        var plugin = new Command("plugin", "Inspect and reload the manager's Wasm plugins");
        var list = new Command("list", "List the loaded plugins with their hooks and counters, and the skipped ones with why");
        actions.Set(list, (context, _, cancellationToken) => context.Manager.GetAsync("/plugins", cancellationToken), Show);
        var reload = new Command("reload", "Reload the plugin directory (a broken plugin is skipped, never loaded half)");
        actions.Set(reload, (context, _, cancellationToken) => context.Manager.PostAsync("/plugins/reload", null, cancellationToken), Show);
        plugin.Subcommands.Add(list);
        plugin.Subcommands.Add(reload);
        return plugin;
    }

    private static void Show(CliContext context, JsonElement listing)
    {
        var table = Tables.Create("#", "NAME", "VERSION", "ACTIVE", "HOOKS", "CALLS", "DENIES", "FAILURES");
        foreach (var p in listing.GetProperty("plugins").EnumerateArray())
        {
            var counters = p.GetProperty("counters");
            Tables.Row(
                table,
                Tables.Str(p, "order"),
                Tables.Str(p, "name"),
                Tables.Str(p, "version"),
                p.GetProperty("active").GetBoolean() ? "yes" : "no",
                string.Join(",", p.GetProperty("hooks").EnumerateArray().Select(h => h.GetString())),
                Tables.Str(counters, "calls"),
                Tables.Str(counters, "denies"),
                Tables.Str(counters, "failures"));
        }

        // Read before anything is printed: an answer of another shape prints no part of a table.
        var skipped = listing.GetProperty("skipped").EnumerateArray().Select(s => $"skipped {Tables.Str(s, "file")}: {Tables.Str(s, "error")}").ToList();

        // A plugin whose new file failed to load runs on at its previous version (a manager before that answered without
        // "kept"): said, or an operator reading "reloaded" would believe the new version is in.
        var kept = listing.TryGetProperty("kept", out var keptList)
            ? keptList.EnumerateArray().Select(k =>
                $"kept {Tables.Str(k, "name")} at its previous version{(Tables.Str(k, "sha256") is { Length: >= 12 } sha ? $" (sha256 {sha[..12]})" : "")}: {Tables.Str(k, "file")}: {Tables.Str(k, "error")}").ToList()
            : [];
        context.Console.Write(table);
        // Each on one line, made printable: file names and errors come from the plugin directory and the plugins.
        foreach (var line in skipped.Concat(kept))
        {
            context.Output.WriteLine(Printable.Line(line));
        }

        context.Output.WriteLine(Tables.Str(listing, "directory") is { Length: > 0 } directory ? $"directory {Printable.Line(directory)}" : "no plugin directory configured (MANAGER_PLUGIN_DIR)");
    }
}
