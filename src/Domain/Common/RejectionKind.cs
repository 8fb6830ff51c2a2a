namespace Propeller.Domain.Common;

/// <summary>The class of a <see cref="Rejection"/>.</summary>
public enum RejectionKind
{
    /// <summary>The aggregate does not exist (or was deleted).</summary>
    NotFound,

    /// <summary>The command is impossible in the aggregate's current state.</summary>
    Conflict,

    /// <summary>The command is well-formed but breaks a business rule.</summary>
    Invalid,
}
