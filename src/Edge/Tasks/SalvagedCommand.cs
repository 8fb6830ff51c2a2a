namespace Propeller.Edge.Tasks;

/// <summary>The id, invocation id, target (null when broadcast or none), attempt and dispatch salvaged from a command that
/// could not be decoded (<see cref="StartRequestParser.Salvage"/>).</summary>
internal sealed record SalvagedCommand(string? Id, string? InvocationId, string? Target, int? Attempt = null, int? Dispatch = null)
{
    public static SalvagedCommand None { get; } = new(null, null, null);

    public bool TargetedElsewhere(string me) => Target is { Length: > 0 } target && !string.Equals(target, me, StringComparison.Ordinal);
}
