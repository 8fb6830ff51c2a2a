using System.Globalization;

namespace Propeller.WasmHost.Components;

/// <summary>What a binary is, from its bytes alone, as the original proplet decides (spec §2.3).</summary>
public static class WasmBinary
{
    /// <summary>The first four bytes of every module and component.</summary>
    private static ReadOnlySpan<byte> Magic => "\0asm"u8;

    private static readonly byte[] ProxyInterface = "wasi:http/incoming-handler"u8.ToArray();

    /// <summary>
    /// A component: the wasm magic and layer byte 0x0D (bytes 4..7 are version 0x0D 0x00 then layer 0x01 0x00). The
    /// original's in-process runtime checks byte 4 only; so does this, so the same binaries take the same path.
    /// </summary>
    public static bool IsComponent(ReadOnlySpan<byte> bytes) =>
        bytes.Length >= 8 && bytes.StartsWith(Magic) && bytes[4] == 0x0D;

    /// <summary>
    /// Why <paramref name="bytes"/> cannot be WebAssembly at all (empty, or not starting with the magic <c>\0asm</c>: a
    /// text file, an archive, a module still base64), said plainly, or null when it may be. Wasmtime's own words for
    /// it were "unexpected end-of-file (at offset 0x0)" or "magic header not detected: bad magic number - expected=[:
    /// 0x0,: 0x61,...".
    /// </summary>
    public static string? NotWasm(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0)
        {
            return "not a WebAssembly binary: it is empty";
        }

        if (bytes.StartsWith(Magic))
        {
            return null;
        }

        var start = string.Join(' ', bytes[..Math.Min(8, bytes.Length)].ToArray().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
        return $"not a WebAssembly binary: it starts with {start}, not 00 61 73 6d (\\0asm)";
    }

    /// <summary>An HTTP proxy component: a component whose bytes contain "wasi:http/incoming-handler" anywhere (spec §2.3).</summary>
    public static bool IsHttpProxy(ReadOnlySpan<byte> bytes) =>
        IsComponent(bytes) && bytes.IndexOf(ProxyInterface) >= 0;
}
