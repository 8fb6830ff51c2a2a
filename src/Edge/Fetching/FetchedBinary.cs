namespace Propeller.Edge.Fetching;

/// <summary>A task's binary as fetched; <paramref name="Sha256"/> is its SHA-256 (lowercase hex) when the proplet computed
/// it from these bytes to verify them (chunks from the proxy), else null. The runtime's compile cache keys by it instead
/// of hashing the bytes again (issue 17).</summary>
public sealed record FetchedBinary(byte[] Bytes, string? Sha256);
