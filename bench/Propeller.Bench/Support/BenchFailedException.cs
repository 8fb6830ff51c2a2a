namespace Propeller.Bench.Support;

/// <summary>
/// A run that cannot give a figure (a task that did not complete, a server that never became ready, a load generator that
/// saw errors): Program prints the message, without a stack trace, and exits with code 1.
/// </summary>
internal sealed class BenchFailedException(string message) : Exception(message);
