using Propeller.Wasm.Cli;

namespace Propeller.Wasm.Tests;

/// <summary>`propeller-wasm` running WASI programs: --dir, --env, --fuel, --timeout, --max-memory, exit codes (issue 5).</summary>
public sealed class WasiCliTests : IDisposable
{
    private readonly DirectoryInfo _temp = Directory.CreateTempSubdirectory("wasi-cli");

    public void Dispose() => _temp.Delete(true);

    [Fact]
    public void GivenArgsEnvAndADirectory_WhenRun_ThenTheGuestSeesThemAndTheExitCodeIsTheGuestExitCode()
    {
        var (code, stdout, _) = Run("--env", "GREETING=hi there", CPrograms.PathOf("basics"), "4", "x");
        code.ShouldBe(4);
        stdout.ShouldBe("arg0=basics.wasm\narg1=4\narg2=x\nGREETING=hi there\n");

        var data = _temp.CreateSubdirectory("data");
        File.WriteAllText(Path.Combine(data.FullName, "input.txt"), "abc\n");
        var files = Run("--dir", $"{data.FullName}::/data", CPrograms.PathOf("files"));
        files.Code.ShouldBe(0, files.Stderr);
        File.ReadAllText(Path.Combine(data.FullName, "out", "final.txt")).ShouldBe("upper:ABC\n");
    }

    [Fact]
    public void GivenLimits_WhenTheGuestExceedsThem_ThenTheCliExitsNonZeroWithTheTrapKind()
    {
        var fuel = Run("--fuel", "1000000", CPrograms.PathOf("spin"));
        fuel.Code.ShouldBe(134);
        fuel.Stderr.ShouldContain("OutOfFuel");

        var timeout = Run("--timeout", "0.3", CPrograms.PathOf("spin"));
        timeout.Code.ShouldBe(134);
        timeout.Stderr.ShouldContain("Interrupt");

        var memory = Run("--max-memory", "8", CPrograms.PathOf("membomb"));
        memory.Code.ShouldBe(12);

        var depth = Run("--max-call-depth", "1000", CPrograms.PathOf("recurse"));
        depth.Code.ShouldBe(134);
        depth.Stderr.ShouldContain("StackOverflow");
    }

    [Fact]
    public void GivenBadArguments_WhenRun_ThenTheCliExplainsAndExitsWithUsageErrors()
    {
        Run("--fuel", "lots", "x.wasm").Code.ShouldBe(2);
        Run("--env", "NOEQUALS", "x.wasm").Code.ShouldBe(2);
        Run("--dir", "::/", "x.wasm").Code.ShouldBe(2);
        Run("--frobnicate", "1", "x.wasm").Stderr.ShouldContain("unknown option --frobnicate");
        Run("--timeout").Code.ShouldBe(2);
        var missing = Run("--dir", Path.Combine(_temp.FullName, "nope") + "::/", CPrograms.PathOf("basics"));
        missing.Code.ShouldBe(1);
        missing.Stderr.ShouldContain("does not exist");
        Run(Path.Combine(_temp.FullName, "missing.wasm")).Code.ShouldBe(1);
    }

    private static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = RunCommand.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
