using System.Collections.Concurrent;

namespace Propeller.Plugins.Tests.Support;

/// <summary>
/// Builds the example plugins in examples/plugins with `clang --target=wasm32-wasi -O2 -nostartfiles -Wl,--no-entry
/// -Wl,--export-dynamic` (scripts/tools.sh installs clang, lld and wasi-libc), once per test run.
/// </summary>
internal static class Examples
{
    private static readonly ConcurrentDictionary<string, Lazy<byte[]>> Built = new(StringComparer.Ordinal);
    private static readonly Lazy<DirectoryInfo> OutputDir = new(() => Directory.CreateTempSubdirectory("plugin-examples"));

    public static byte[] Get(string name, params string[] defines) =>
        Built.GetOrAdd(name + string.Join(' ', defines), _ => new Lazy<byte[]>(() => Compile(name, defines))).Value;

    private static byte[] Compile(string name, string[] defines)
    {
        var source = Path.Combine(AppContext.BaseDirectory, "examples", name, name + ".c");
        var output = Path.Combine(OutputDir.Value.FullName, $"{name}-{Guid.NewGuid():N}.wasm");
        Wat.Run("clang", [
            "--target=wasm32-wasi", "-O2", "-nostartfiles", "-Wl,--no-entry", "-Wl,--export-dynamic",
            .. defines.Select(d => "-D" + d), "-o", output, source]);
        return File.ReadAllBytes(output);
    }
}
