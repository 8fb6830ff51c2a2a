namespace Propeller.Domain.Proplets;

/// <summary>A proplet as folded from its events.</summary>
public sealed record PropletState(bool Exists, bool Deleted, PropletId Id, string? Name, PropletMetadata Metadata, bool Offline, DateTimeOffset? RegisteredAt, DateTimeOffset? OfflineSince)
{
    public static readonly PropletState Initial = new(false, false, default, null, PropletMetadata.Empty, false, null, null);
}
