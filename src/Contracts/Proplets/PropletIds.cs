using System.Text;

namespace Propeller.Contracts.Proplets;

/// <summary>
/// The longest proplet id taken, over HTTP (a task's <c>proplet_id</c>) and MQTT (discovery, heartbeats, metrics) alike.
/// PostgreSQL's indexes hold it whole (the task view's proplet column, the liveness timer's key, proplet_metrics) and
/// refuse an index row over about 2,700 bytes (SQLSTATE 54000): a longer id failed every write that named it. Counted in
/// UTF-8 bytes, as PostgreSQL counts: 1,024 characters of CJK text are 3,072 bytes. A proplet's id is its
/// PROPLET_ENTITY_ID (a UUID, 36 bytes): no legitimate id comes near.
/// </summary>
public static class PropletIds
{
    public const int MaxBytes = 1024;

    /// <summary>Why <paramref name="propletId"/> cannot be taken, or null when it can.</summary>
    public static string? Problem(string propletId)
    {
        ArgumentNullException.ThrowIfNull(propletId);
        // A character is at least one byte: a longer id is over the limit without counting.
        return propletId.Length > MaxBytes || Encoding.UTF8.GetByteCount(propletId) > MaxBytes
            ? $"proplet_id is longer than {MaxBytes} bytes (UTF-8)"
            : null;
    }
}
