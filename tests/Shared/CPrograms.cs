using System.Collections.Concurrent;
using System.Diagnostics;

namespace Propeller.Tests.Shared;

/// <summary>
/// Builds the C programs in WasiPrograms/ with `clang --target=wasm32-wasi -O2` (Debian clang, lld, wasi-libc and
/// libclang-rt-dev-wasm32, installed by scripts/tools.sh), once per test run.
/// </summary>
internal static class CPrograms
{
    private static readonly ConcurrentDictionary<string, Lazy<byte[]>> Built = new(StringComparer.Ordinal);
    private static readonly Lazy<DirectoryInfo> OutputDir = new(() => Directory.CreateTempSubdirectory("wasi-c"));

    public static byte[] Get(string name) => Built.GetOrAdd(name, n => new Lazy<byte[]>(() => Compile(n))).Value;

    public static string PathOf(string name)
    {
        Get(name);
        return Path.Combine(OutputDir.Value.FullName, name + ".wasm");
    }

    private static byte[] Compile(string name)
    {
        var source = Path.Combine(AppContext.BaseDirectory, "WasiPrograms", name + ".c");
        var output = Path.Combine(OutputDir.Value.FullName, name + ".wasm");
        var psi = new ProcessStartInfo("clang") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in new[] { "--target=wasm32-wasi", "-O2", "-o", output, source })
        {
            psi.ArgumentList.Add(arg);
        }

        using var process = Process.Start(psi) ?? throw new InvalidOperationException("clang did not start");
        var error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"clang failed on {name}.c: {error}");
        }

        return File.ReadAllBytes(output);
    }
}
