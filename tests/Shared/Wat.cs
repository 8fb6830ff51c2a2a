using System.Diagnostics;

namespace Propeller.Tests.Shared;

/// <summary>Assembles WebAssembly text with wabt's wat2wasm (installed by scripts/tools.sh), keeping the name section.</summary>
internal static class Wat
{
    public static byte[] ToWasm(string wat) => Assemble(wat, validate: true);

    /// <summary>Assembles without wat2wasm's own validation, to produce deliberately invalid modules.</summary>
    public static byte[] ToWasmUnchecked(string wat) => Assemble(wat, validate: false);

    private static byte[] Assemble(string wat, bool validate)
    {
        var dir = Directory.CreateTempSubdirectory("wat");
        try
        {
            var input = Path.Combine(dir.FullName, "m.wat");
            var output = Path.Combine(dir.FullName, "m.wasm");
            File.WriteAllText(input, wat);
            var psi = new ProcessStartInfo("wat2wasm") { RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("--debug-names");
            if (!validate)
            {
                psi.ArgumentList.Add("--no-check");
            }

            psi.ArgumentList.Add(input);
            psi.ArgumentList.Add("-o");
            psi.ArgumentList.Add(output);
            using var process = Process.Start(psi) ?? throw new InvalidOperationException("wat2wasm did not start");
            var error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException("wat2wasm failed: " + error);
            }

            return File.ReadAllBytes(output);
        }
        finally
        {
            dir.Delete(true);
        }
    }

}
