namespace Propeller.Domain.Common;

/// <summary>Why a decider refused a command. An expected outcome, mapped to 404/409/422 at the edge.</summary>
public sealed record Rejection(RejectionKind Kind, string Reason)
{
    public static Rejection NotFound(string reason) => new(RejectionKind.NotFound, reason);

    public static Rejection Conflict(string reason) => new(RejectionKind.Conflict, reason);

    public static Rejection Invalid(string reason) => new(RejectionKind.Invalid, reason);
}
