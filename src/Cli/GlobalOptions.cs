using System.CommandLine;

namespace Propeller.Cli;

/// <summary>The options every command takes (recursive): where the manager is, who asks, and how to print.</summary>
internal sealed class GlobalOptions
{
    public const string DefaultUrl = "http://localhost:7070";

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

    public Option<OutputFormat> Output { get; }

    public IEnumerable<Option> All => [Url, ApiKey, User, Output];
}
