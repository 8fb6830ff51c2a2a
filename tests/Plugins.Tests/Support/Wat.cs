using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Propeller.Plugins.Tests.Support;

/// <summary>
/// Test plugins in WebAssembly text, assembled with wabt's wat2wasm (installed by scripts/tools.sh). <see cref="Plugin"/>
/// wraps hook bodies in the ABI boilerplate: a memory, plugin_alloc handing out one 64 KiB input buffer at 65536, and
/// a no-op plugin_free; <see cref="Answer"/> is a hook body returning a constant JSON answer from a data segment.
/// </summary>
internal static class Wat
{
    private static int _nextData;

    public static byte[] ToWasm(string wat)
    {
        var dir = Directory.CreateTempSubdirectory("wat");
        try
        {
            var input = Path.Combine(dir.FullName, "m.wat");
            var output = Path.Combine(dir.FullName, "m.wasm");
            File.WriteAllText(input, wat);
            Run("wat2wasm", input, "-o", output);
            return File.ReadAllBytes(output);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    public static void Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"{tool} did not start");
        var error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{tool} failed: {error}");
        }
    }

    /// <summary>A module with the ABI boilerplate and <paramref name="body"/> (functions, data, globals, imports after the boilerplate).</summary>
    public static string Plugin(string body, string imports = "", bool alloc = true, bool free = true, int pages = 2) => $$"""
        (module
          {{imports}}
          (memory (export "memory") {{pages}})
          {{(alloc ? """(func (export "plugin_alloc") (param $len i32) (result i32) (i32.const 65536))""" : "")}}
          {{(free ? """(func (export "plugin_free") (param i32 i32))""" : "")}}
          {{body}}
        )
        """;

    /// <summary>An exported hook returning <paramref name="json"/> packed as ptr &lt;&lt; 32 | len.</summary>
    public static string Answer(string hook, string json) => Answer(hook, Encoding.UTF8.GetBytes(json));

    /// <summary>An exported hook returning <paramref name="bytes"/> as they are (e.g. invalid UTF-8).</summary>
    public static string Answer(string hook, byte[] bytes)
    {
        var offset = 1024 + (Interlocked.Increment(ref _nextData) % 40 * 512);
        return $$"""
            (data (i32.const {{offset}}) "{{Escape(bytes)}}")
            (func (export "{{hook}}") (param i32 i32) (result i64) (i64.const {{Packed(offset, bytes.Length)}}))
            """;
    }

    public static string Packed(int ptr, int len) => (((long)ptr << 32) | (uint)len).ToString(CultureInfo.InvariantCulture);

    public static string Escape(byte[] bytes)
    {
        var sb = new StringBuilder();
        foreach (var b in bytes)
        {
            sb.Append(CultureInfo.InvariantCulture, $"\\{b:x2}");
        }

        return sb.ToString();
    }
}
