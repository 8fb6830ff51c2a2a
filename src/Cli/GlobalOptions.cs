using System.CommandLine;
using Propeller.Cli.Tasks;

namespace Propeller.Cli;

/// <summary>The options every command takes (recursive): where the manager is, who asks, and how to print.</summary>
internal sealed class GlobalOptions
{
    public const string DefaultUrl = "http://localhost:7070";

    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(30);

    public GlobalOptions(Func<string, string?> environment)
    {
        Url = new Option<string>("--url", "-u")
        {
            Description = "The manager's base URL [env: PROPELLER_URL]",
            Recursive = true,
            DefaultValueFactory = _ => environment("PROPELLER_URL") is { Length: > 0 } url ? url : DefaultUrl,
        };
        ApiKey = new Option<string?>("--api-key")
        {
            Description = "Sent as 'Authorization: Bearer KEY' [env: PROPELLER_API_KEY]",
            Recursive = true,
            DefaultValueFactory = _ => environment("PROPELLER_API_KEY"),
        };
        User = new Option<string?>("--user")
        {
            Description = "Sent as X-User-Id: the user recorded in the task's history and shown to plugins [env: PROPELLER_USER]",
            Recursive = true,
            DefaultValueFactory = _ => environment("PROPELLER_USER"),
        };
        RequestTimeout = new Option<TimeSpan>("--request-timeout")
        {
            Description = "Give up on a manager that does not answer a request within this long (exit code 3; long polls and the event stream wait longer) [env: PROPELLER_REQUEST_TIMEOUT]",
            Recursive = true,
            DefaultValueFactory = result => environment("PROPELLER_REQUEST_TIMEOUT") is { Length: > 0 } text
                ? SpecOptions.ParseDuration(text, error => result.AddError("PROPELLER_REQUEST_TIMEOUT: " + error))
                : DefaultRequestTimeout,
            CustomParser = SpecOptions.ParseDuration,
        };
        Output = new Option<OutputFormat>("--output", "-o")
        {
            Description = "table (default) or json (the manager's JSON, for scripts)",
            Recursive = true,
            DefaultValueFactory = _ => OutputFormat.Table,
        };
    }

    public Option<string> Url { get; }

    public Option<string?> ApiKey { get; }

    public Option<string?> User { get; }

    public Option<TimeSpan> RequestTimeout { get; }

    public Option<OutputFormat> Output { get; }

    public IEnumerable<Option> All => [Url, ApiKey, User, RequestTimeout, Output];
}
