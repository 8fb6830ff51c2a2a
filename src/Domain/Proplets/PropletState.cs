namespace Propeller.Domain.Proplets;

/// <summary>A proplet as folded from its events; <c>LastWentOffline</c> is when it last went offline, kept once it is back
/// (<c>OfflineSince</c> is not).</summary>
public sealed record PropletState(
    bool Exists, bool Deleted, PropletId Id, string? Name, PropletMetadata Metadata, bool Offline, DateTimeOffset? RegisteredAt, DateTimeOffset? OfflineSince,
    DateTimeOffset? LastWentOffline = null)
{
    public static readonly PropletState Initial = new(false, false, default, null, PropletMetadata.Empty, false, null, null);
}
