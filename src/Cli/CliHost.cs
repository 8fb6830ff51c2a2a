using Propeller.Cli.Tasks;

namespace Propeller.Cli;

/// <summary>Where the CLI runs: its streams, environment and (for tests) the HTTP handler and a watch's timers.</summary>
internal sealed record CliHost(TextWriter Output, TextWriter Error, Func<string, string?> Environment, bool Interactive = false, HttpMessageHandler? Handler = null, WaitTiming? Timing = null)
{
    public static CliHost FromConsole() => new(
        System.Console.Out,
        System.Console.Error,
        System.Environment.GetEnvironmentVariable,
        !System.Console.IsOutputRedirected && System.Environment.GetEnvironmentVariable("TERM") is not (null or "dumb"));
}
