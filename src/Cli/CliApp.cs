using System.CommandLine;
using Propeller.Cli.Completion;
using Propeller.Cli.Plugins;
using Propeller.Cli.Proplets;
using Propeller.Cli.Tasks;

namespace Propeller.Cli;

/// <summary>The <c>propeller</c> command tree (docs/cli.md), runnable in-process for tests.</summary>
internal static class CliApp
{
    public static RootCommand Build(CliHost host)
    {
        var options = new GlobalOptions(host.Environment);
        var actions = new CommandActions(options, host);
        var root = new RootCommand("propeller: the command-line client of the Propeller manager's HTTP API");
        foreach (var option in options.All)
        {
            root.Options.Add(option);
        }

        root.Subcommands.Add(TaskCommands.Build(actions));
        root.Subcommands.Add(PropletCommands.Build(actions));
        root.Subcommands.Add(PluginCommands.Build(actions));
        root.Subcommands.Add(CompletionCommand.Build());
        return root;
    }

    /// <summary>Parses and runs; usage errors exit with 2 (after the parser's message and help hint).</summary>
    public static async Task<int> RunAsync(string[] args, CliHost host, CancellationToken cancellationToken)
    {
        var parse = Build(host).Parse(args);
        var exit = await parse.InvokeAsync(new InvocationConfiguration { Output = host.Output, Error = host.Error }, cancellationToken);
        return parse.Errors.Count > 0 ? CliException.Usage : exit;
    }
}
