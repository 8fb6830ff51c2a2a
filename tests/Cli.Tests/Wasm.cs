namespace Propeller.Cli.Tests;

/// <summary>The modules the CLI tests run, assembled once with wat2wasm and kept as bytes.</summary>
internal static class Wasm
{
    /// <summary>(func (export "main") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add): the demo module.</summary>
    public static byte[] Addition { get; } = Convert.FromBase64String("AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL");

    /// <summary>(func (export "main") (result i32) unreachable).</summary>
    public static byte[] Trap { get; } = Convert.FromBase64String("AGFzbQEAAAABBQFgAAF/AwIBAAcIAQRtYWluAAAKBQEDAAAL");

    /// <summary>(func (export "main") (loop $l (br $l))): runs until stopped.</summary>
    public static byte[] Spin { get; } = Convert.FromBase64String("AGFzbQEAAAABBAFgAAADAgEABwgBBG1haW4AAAoJAQcAA0AMAAsL");
}
