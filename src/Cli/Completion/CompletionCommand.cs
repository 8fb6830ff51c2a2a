using System.CommandLine;

namespace Propeller.Cli.Completion;

/// <summary>
/// <c>propeller completion bash|zsh</c>: a script that asks the CLI itself for completions through System.CommandLine's
/// <c>[suggest]</c> directive (the same completions <c>dotnet-suggest</c> would get, without installing it).
/// </summary>
internal static class CompletionCommand
{
    public static Command Build()
    {
        var shell = new Argument<string>("shell") { Description = "bash or zsh" };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        var command = new Command("completion", "Print a shell completion script: eval \"$(propeller completion bash)\"") { shell };
        command.SetAction(parse =>
        {
            var script = parse.GetValue(shell) == "zsh" ? Zsh : Bash;
            parse.InvocationConfiguration.Output.Write(script);
            return 0;
        });
        return command;
    }

    // COMP_LINE up to the cursor, without the program name: the directive's position counts from there.
    private const string Bash = """
        _propeller_complete() {
            local line="${COMP_LINE:0:COMP_POINT}"
            line="${line#* }"
            local IFS=$'\n'
            COMPREPLY=($(propeller "[suggest:${#line}]" "$line" 2>/dev/null))
        }
        complete -o default -F _propeller_complete propeller

        """;

    private const string Zsh = """
        _propeller_complete() {
            local line="${BUFFER[1,CURSOR]}"
            line="${line#* }"
            local -a items
            items=("${(@f)$(propeller "[suggest:${#line}]" "$line" 2>/dev/null)}")
            compadd -a items
        }
        compdef _propeller_complete propeller

        """;
}
