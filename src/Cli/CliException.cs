using System.Net;

namespace Propeller.Cli;

/// <summary>
/// An error shown as one line on stderr, ending the command with <see cref="ExitCode"/> (docs/cli.md). <see cref="Status"/>:
/// the HTTP status of an error answer (a watch's long polls ask again after a gateway's 502, 503 or 504), else null.
/// </summary>
internal sealed class CliException(string message, int exitCode, HttpStatusCode? status = null) : Exception(message)
{
    /// <summary>The manager answered with an error.</summary>
    public const int Failed = 1;

    /// <summary>Bad input on the command line (a missing file, a malformed value).</summary>
    public const int Usage = 2;

    /// <summary>The manager could not be reached, or did not answer in time.</summary>
    public const int Unreachable = 3;

    public int ExitCode { get; } = exitCode;

    public HttpStatusCode? Status { get; } = status;
}
