namespace Propeller.WasmHost.Components;

/// <summary>What a binary is, from its bytes alone, as the original proplet decides (spec §2.3).</summary>
public static class WasmBinary
{
    private static readonly byte[] ProxyInterface = "wasi:http/incoming-handler"u8.ToArray();

    /// <summary>
    /// A component: the wasm magic and layer byte 0x0D (bytes 4..7 are version 0x0D 0x00 then layer 0x01 0x00). The
    /// original's in-process runtime checks byte 4 only; so does this, so the same binaries take the same path.
    /// </summary>
    public static bool IsComponent(ReadOnlySpan<byte> bytes) =>
        bytes.Length >= 8 && bytes[..4].SequenceEqual("\0asm"u8) && bytes[4] == 0x0D;

    /// <summary>An HTTP proxy component: a component whose bytes contain "wasi:http/incoming-handler" anywhere (spec §2.3).</summary>
    public static bool IsHttpProxy(ReadOnlySpan<byte> bytes) =>
        IsComponent(bytes) && bytes.IndexOf(ProxyInterface) >= 0;
}
