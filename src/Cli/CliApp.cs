using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
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

    /// <summary>Parses and runs; usage errors exit with 2 (after <see cref="WriteUsageErrorAsync"/>).</summary>
    public static async Task<int> RunAsync(string[] args, CliHost host, CancellationToken cancellationToken)
    {
        var parse = Build(host).Parse(args);
        if (parse.Action is ParseErrorAction errorAction)
        {
            await WriteUsageErrorAsync(parse, errorAction, host.Error, cancellationToken);
            return CliException.Usage;
        }

        var exit = await parse.InvokeAsync(new InvocationConfiguration { Output = host.Output, Error = host.Error }, cancellationToken);
        return parse.Errors.Count > 0 ? CliException.Usage : exit;
    }

    /// <summary>
    /// What the parser found wrong, as every other error (docs/cli.md): lines on stderr starting with <c>propeller: </c>,
    /// a typo's suggestions on its line, then where the help is, instead of the parser's default (the errors unprefixed,
    /// suggestions and the whole help on stdout).
    /// </summary>
    private static async Task WriteUsageErrorAsync(ParseResult parse, ParseErrorAction errorAction, TextWriter error, CancellationToken cancellationToken)
    {
        foreach (var parseError in parse.Errors)
        {
            await error.WriteLineAsync("propeller: " + Output.Printable.Line(parseError.Message));
        }

        // The parser's own typo corrections (its edit distances), captured: each unmatched token's header line (the
        // localized "'lst' was not matched. Did you mean one of the following?"), then one line per suggestion, a
        // command or option name, which never holds a space. Joined here into one line per token.
        errorAction.ShowHelp = false;
        using var suggestions = new StringWriter();
        await parse.InvokeAsync(new InvocationConfiguration { Output = suggestions, Error = TextWriter.Null }, cancellationToken);
        string? line = null;
        foreach (var text in suggestions.ToString().Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (text.Contains(' ', StringComparison.Ordinal) || line is null)
            {
                if (line is not null)
                {
                    await error.WriteLineAsync(line);
                }

                line = "propeller: " + text;
            }
            else
            {
                line += (line.EndsWith('?') ? " " : ", ") + text;
            }
        }

        if (line is not null)
        {
            await error.WriteLineAsync(line);
        }

        // The root's name is the process's (testhost under tests); the words after it are the subcommands typed.
        var words = new List<string>();
        for (var result = parse.CommandResult; result.Parent is CommandResult parent; result = parent)
        {
            words.Insert(0, result.Command.Name);
        }

        await error.WriteLineAsync($"propeller: see '{string.Join(' ', words.Prepend("propeller"))} --help'");
    }
}
