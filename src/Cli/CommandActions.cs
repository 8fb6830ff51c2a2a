using System.CommandLine;
using System.Text.Json;

namespace Propeller.Cli;

/// <summary>Gives a command its action with the context built and every failure shown as one line on stderr.</summary>
internal sealed class CommandActions(GlobalOptions options, CliHost host)
{
    public Func<string, string?> Environment => host.Environment;

    public void Set(Command command, Func<CliContext, ParseResult, CancellationToken, Task<int>> action) =>
        command.SetAction(async (parse, cancellationToken) =>
        {
            CliContext? context = null;
            try
            {
                context = CliContext.From(parse, options, host);
                return await action(context, parse, cancellationToken);
            }
            catch (Exception ex) when (context is not null && IsAnswerReading(ex))
            {
                // What JsonElement throws when an answer lacks a property or has another kind of value: a manager of
                // another version, or something else at that URL. One line, like every other failure.
                await host.Error.WriteLineAsync($"propeller: unexpected answer from the manager at {context.Manager.BaseAddress}: {Output.Printable.Line(ex.Message)}");
                return CliException.Failed;
            }
            catch (CliException ex)
            {
                await host.Error.WriteLineAsync("propeller: " + Output.Printable.Line(ex.Message));
                return ex.ExitCode;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                await host.Error.WriteLineAsync("propeller: interrupted");
                return 130;
            }
            finally
            {
                context?.Dispose();
            }
        });

    /// <summary>
    /// An exception of System.Text.Json reading an answer (a missing property, a value of another kind or out of range,
    /// JSON that does not parse). Only those: an InvalidOperationException of anything else (HttpClient, Spectre) is a
    /// fault of the CLI's, and reported as the manager's answer it sent the reader looking at the wrong program.
    /// </summary>
    private static bool IsAnswerReading(Exception ex) =>
        ex is JsonException
        || (ex is KeyNotFoundException or InvalidOperationException or FormatException && ex.TargetSite?.DeclaringType?.Assembly == typeof(JsonElement).Assembly);

    /// <summary>An action that prints the manager's answer: its JSON, or <paramref name="table"/> of it.</summary>
    public void Set(Command command, Func<CliContext, ParseResult, CancellationToken, Task<JsonElement>> call, Action<CliContext, JsonElement> table) =>
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
