namespace Propeller.Cli;

/// <summary>An error shown as one line on stderr, ending the command with <see cref="ExitCode"/> (docs/cli.md).</summary>
internal sealed class CliException(string message, int exitCode) : Exception(message)
{
    /// <summary>The manager answered with an error.</summary>
    public const int Failed = 1;

    /// <summary>Bad input on the command line (a missing file, a malformed value).</summary>
    public const int Usage = 2;

    /// <summary>The manager could not be reached, or did not answer in time.</summary>
    public const int Unreachable = 3;

    public int ExitCode { get; } = exitCode;
}
