namespace Propeller.Edge.Execution;

/// <summary>What a task produced: <see cref="Results"/> text on success, or an <see cref="Error"/> message (then results
/// are "", as the original sends).</summary>
public sealed record TaskOutcome(string Results, string? Error)
{
    public bool Succeeded => Error is null;

    public static TaskOutcome Success(string results) => new(results, null);

    public static TaskOutcome Failure(string error) => new("", error);
}
