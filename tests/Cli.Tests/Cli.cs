using System.Text.Json;
using Propeller.Cli.Tasks;

namespace Propeller.Cli.Tests;

/// <summary>Runs the CLI in-process, as a user would type it, capturing stdout, stderr and the exit code.</summary>
internal static class Cli
{
    public static async Task<Outcome> RunAsync(string url, params string[] args) => await RunWithEnvironmentAsync(new Dictionary<string, string> { ["PROPELLER_URL"] = url }, args);

    public static async Task<Outcome> RunWithEnvironmentAsync(IReadOnlyDictionary<string, string> environment, params string[] args) =>
        await RunWithAsync(environment, null, args);

    /// <summary>Runs against <paramref name="manager"/> (at <see cref="FakeManager.Url"/>) instead of a real one.</summary>
    public static async Task<Outcome> RunAsync(FakeManager manager, params string[] args) =>
        await RunWithAsync(new Dictionary<string, string> { ["PROPELLER_URL"] = FakeManager.Url }, manager, args);

    /// <summary>Runs against <paramref name="manager"/> with a watch's timers made short (<see cref="Fast"/>).</summary>
    public static async Task<Outcome> RunFastAsync(FakeManager manager, params string[] args) =>
        await RunWithAsync(new Dictionary<string, string> { ["PROPELLER_URL"] = FakeManager.Url }, manager, args, Fast);

    /// <summary>A watch's timers in milliseconds instead of seconds: a test sees what they do without waiting them out.</summary>
    public static WaitTiming Fast { get; } = new(TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(10));

    private static async Task<Outcome> RunWithAsync(IReadOnlyDictionary<string, string> environment, HttpMessageHandler? handler, string[] args, WaitTiming? timing = null)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var host = new CliHost(output, error, name => environment.TryGetValue(name, out var value) ? value : null, Handler: handler, Timing: timing);
        var exit = await CliApp.RunAsync(args, host, TestContext.Current.CancellationToken);
        return new Outcome(exit, output.ToString(), error.ToString());
    }

    internal sealed record Outcome(int Exit, string Out, string Err)
    {
        public JsonElement Json => JsonDocument.Parse(Out).RootElement.Clone();

        public override string ToString() => $"exit {Exit}\n--- stdout\n{Out}\n--- stderr\n{Err}";
    }
}
