namespace Propeller.Proxy.Serving;

/// <summary>A pulled Wasm artefact: its layer digest, bytes and their sha256 (hex, sent in every chunk).</summary>
public sealed record Artifact(string Digest, byte[] Data, string Sha256);
