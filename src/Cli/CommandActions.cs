using System.CommandLine;

namespace Propeller.Cli;

/// <summary>Gives a command its action with the context built and every failure shown as one line on stderr.</summary>
internal sealed class CommandActions(GlobalOptions options, CliHost host)
{
    public Func<string, string?> Environment => host.Environment;

    public void Set(Command command, Func<CliContext, ParseResult, CancellationToken, Task<int>> action) =>
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                using var context = CliContext.From(parse, options, host);
                return await action(context, parse, cancellationToken);
            }
            catch (CliException ex)
            {
                await host.Error.WriteLineAsync("propeller: " + ex.Message);
                return ex.ExitCode;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                await host.Error.WriteLineAsync("propeller: interrupted");
                return 130;
            }
        });

    /// <summary>An action that prints the manager's answer: its JSON, or <paramref name="table"/> of it.</summary>
    public void Set(Command command, Func<CliContext, ParseResult, CancellationToken, Task<System.Text.Json.JsonElement>> call, Action<CliContext, System.Text.Json.JsonElement> table) =>
        Set(command, async (context, parse, cancellationToken) =>
        {
            var answer = await call(context, parse, cancellationToken);
            if (context.Json)
            {
                context.WriteJson(answer);
            }
            else
            {
                table(context, answer);
            }

            return 0;
        });
}
