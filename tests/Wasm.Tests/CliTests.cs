using Propeller.Wasm.Cli;

namespace Propeller.Wasm.Tests;

public sealed class CliTests
{
    [Fact]
    public void GivenInvoke_WhenRun_ThenEachResultOnItsOwnLine()
    {
        var file = WriteModule("""
            (module (func (export "pair") (param i32 f64) (result i32 f64) (local.get 0) (local.get 1))
                    (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1))))
            """);
        try
        {
            var (code, stdout, _) = Run("--invoke", "pair", file, "-7", "2.5");
            code.ShouldBe(0);
            stdout.ShouldBe("-7\n2.5\n", StringCompareShould.IgnoreLineEndings);
            var (trapCode, _, stderr) = Run("--invoke", "div", file, "1", "0");
            trapCode.ShouldBe(134);
            stderr.ShouldContain("integer divide by zero");
            Run("--invoke", "missing", file).Code.ShouldBe(1);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void GivenSpecDirectory_WhenRunningSpectest_ThenPerFileAndTotalCountLines()
    {
        var dir = Directory.CreateTempSubdirectory("spec");
        var file = Path.Combine(dir.FullName, "mini");
        Directory.CreateDirectory(file);
        File.WriteAllBytes(Path.Combine(file, "mini.0.wasm"), Wat.ToWasm("""(module (func (export "f") (result i32) (i32.const 0x80000000)))"""));
        File.WriteAllText(Path.Combine(file, "mini.json"), """
            {"source_filename": "mini.wast", "commands": [
              {"type": "module", "line": 1, "filename": "mini.0.wasm"},
              {"type": "assert_return", "line": 2, "action": {"type": "invoke", "field": "f", "args": []},
               "expected": [{"type": "i32", "value": "2147483648"}]},
              {"type": "assert_malformed", "line": 3, "filename": "mini.1.wat", "text": "x", "module_type": "text"}]}
            """);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        SpecTestRunner.Run(dir.FullName, null, [], stdout, stderr).ShouldBe(0);
        stdout.ToString().ShouldContain("wasm-spec: 2 passed, 0 failed, 1 skipped (mini)");
        stdout.ToString().TrimEnd().Split('\n')[^1].ShouldBe("wasm-spec: 2 passed, 0 failed, 1 skipped");
        dir.Delete(true);
    }

    private static string WriteModule(string wat)
    {
        var path = Path.Combine(Path.GetTempPath(), $"cli-{Guid.NewGuid():N}.wasm");
        File.WriteAllBytes(path, Wat.ToWasm(wat));
        return path;
    }

    private static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = RunCommand.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
