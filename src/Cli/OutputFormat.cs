namespace Propeller.Cli;

/// <summary><c>--output</c>: tables for people (the default), the manager's JSON for scripts.</summary>
internal enum OutputFormat
{
    Table,
    Json,
}
