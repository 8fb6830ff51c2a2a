using System.Security.Cryptography;
using System.Text;
using Propeller.Application.EventStore;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// Our stream ids are "{type}-{id}" (task-&lt;uuid&gt;, proplet-&lt;id&gt;); Marten keys streams by Guid (ADR 0010). A
/// Guid id maps to itself; any other id (a proplet may name itself freely) to a name-based UUID (RFC 9562 version 8,
/// SHA-256 over the whole stream id), so the same stream id always finds the same stream.
/// </summary>
internal static class MartenStreamIds
{
    public static Guid ToGuid(string streamId)
    {
        if (string.IsNullOrWhiteSpace(streamId))
        {
            throw new EventStoreValidationException("stream id is empty");
        }

        var dash = streamId.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0 && Guid.TryParseExact(streamId.AsSpan(dash + 1), "D", out var id))
        {
            return id;
        }

        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(streamId), hash);
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash[..16], bigEndian: true);
    }

    /// <summary>"task" for "task-…": the stream type our ids carry.</summary>
    public static string TypeOf(string streamId)
    {
        var dash = streamId.IndexOf('-', StringComparison.Ordinal);
        return dash > 0 ? streamId[..dash] : streamId;
    }
}
