namespace Propeller.Bench.Support;

/// <summary>A benchmark's arguments are wrong: Program prints the message on one line and exits with code 2.</summary>
internal sealed class BenchUsageException(string message) : Exception(message);
