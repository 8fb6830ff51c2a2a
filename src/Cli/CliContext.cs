using System.CommandLine;
using System.Text.Json;
using Propeller.Cli.Http;
using Propeller.Cli.Tasks;
using Spectre.Console;

namespace Propeller.Cli;

/// <summary>What a command's action needs: the manager client, the output format and the consoles.</summary>
internal sealed class CliContext(ManagerClient manager, OutputFormat format, IAnsiConsole console, TextWriter output, TextWriter error, bool interactive, WaitTiming timing) : IDisposable
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public ManagerClient Manager { get; } = manager;

    public OutputFormat Format { get; } = format;

    /// <summary>stdout for tables and lines (no colours or animation unless it is a terminal).</summary>
    public IAnsiConsole Console { get; } = console;

    public TextWriter Output { get; } = output;

    public TextWriter Error { get; } = error;

    /// <summary>stdout is a terminal: live status lines are drawn.</summary>
    public bool Interactive { get; } = interactive;

    /// <summary>The timers of a watch (<see cref="WaitTiming.Default"/> but in tests).</summary>
    public WaitTiming Timing { get; } = timing;

    public bool Json => Format == OutputFormat.Json;

    /// <summary>Writes JSON as the manager sent it, indented.</summary>
    public void WriteJson(JsonElement value) => Output.WriteLine(value.ValueKind == JsonValueKind.Undefined ? "null" : JsonSerializer.Serialize(value, Indented));

    public void WriteJson<T>(T value) => Output.WriteLine(JsonSerializer.Serialize(value, Indented));

    public void Dispose() => Manager.Dispose();

    /// <summary>Builds the context from the global options.</summary>
    public static CliContext From(ParseResult parse, GlobalOptions options, CliHost host)
    {
        var url = parse.GetValue(options.Url) ?? GlobalOptions.DefaultUrl;
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            throw new CliException($"--url must be an http or https URL, got '{url}'", CliException.Usage);
        }

        var user = parse.GetValue(options.User);
        if (user is not null && !IsHeaderValue(user))
        {
            // HttpClient refuses the header when sending (reported as an unreachable manager) or adding it (a newline).
            throw new CliException("--user (PROPELLER_USER) must be printable ASCII: it is sent as the X-User-Id header", CliException.Usage);
        }

        var apiKey = parse.GetValue(options.ApiKey);
        if (apiKey is not null && !IsHeaderValue(apiKey))
        {
            throw new CliException("--api-key (PROPELLER_API_KEY) must be printable ASCII: it is sent in the Authorization header", CliException.Usage);
        }

        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(host.Output),
            Ansi = host.Interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = host.Interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = host.Interactive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        if (!host.Interactive)
        {
            console.Profile.Width = 200; // piped: no wrapping of ids at a guessed 80 columns
        }

        var client = new ManagerClient(uri, apiKey, user, parse.GetValue(options.RequestTimeout), host.Handler);
        return new CliContext(client, parse.GetValue(options.Output), console, host.Output, host.Error, host.Interactive, host.Timing ?? WaitTiming.Default);
    }

    /// <summary>Printable ASCII: what a header value may hold (the manager's Kestrel refuses other bytes too).</summary>
    private static bool IsHeaderValue(string value) => value.All(c => c is >= ' ' and <= '~');
}
