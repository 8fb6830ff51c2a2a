namespace Propeller.Domain.Proplets;

/// <summary>A proplet's identity: chosen by the proplet itself (a UUID string in practice), so kept as text.</summary>
public readonly record struct PropletId(string Value)
{
    public override string ToString() => Value;
}
