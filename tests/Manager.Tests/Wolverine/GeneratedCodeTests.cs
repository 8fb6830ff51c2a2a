using System.Diagnostics;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>
/// The Wolverine pipeline runs pre-generated handler code (TypeLoadMode.Static, ADR 0014). Wolverine cannot tell when
/// that code is stale, so this test runs the documented generator (`propeller-manager codegen write`, what
/// scripts/codegen.sh runs) into an empty folder and compares its output with the code checked in under
/// src/Manager/Internal/Generated: a changed handler, message, policy, middleware or handler dependency fails it until
/// the code is generated again.
/// </summary>
public sealed class GeneratedCodeTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task CheckedInHandlerCode_IsWhatTheGeneratorWritesNow()
    {
        var manager = Path.Combine(RepositoryRoot(), "src", "Manager");
        var checkedIn = Path.Combine(manager, "Internal", "Generated");
        var contentRoot = Directory.CreateTempSubdirectory("propeller-codegen-");
        try
        {
            await RunCodegenWriteAsync(ManagerDll(manager), contentRoot.FullName);
            var fresh = Path.Combine(contentRoot.FullName, "Internal", "Generated");
            var expected = Files(fresh);
            expected.ShouldNotBeEmpty("the generator wrote nothing");
            var actual = Files(checkedIn);
            var stale = expected.Keys.Union(actual.Keys, StringComparer.Ordinal)
                .Where(name => !expected.TryGetValue(name, out var want) || !actual.TryGetValue(name, out var have) || want != have)
                .Order(StringComparer.Ordinal)
                .ToList();
            stale.ShouldBeEmpty("the pre-generated Wolverine handler code is stale: run scripts/codegen.sh and commit src/Manager/Internal/Generated");
        }
        finally
        {
            contentRoot.Delete(recursive: true);
        }
    }

    private static async Task RunCodegenWriteAsync(string managerDll, string contentRoot)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = contentRoot,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(managerDll);
        start.ArgumentList.Add("codegen");
        start.ArgumentList.Add("write");

        // The generator's configuration is its own (WolverinePipeline.ConfigureForCodegen), not this shell's.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MANAGER_", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(key);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync(Ct);
        var errors = process.StandardError.ReadToEndAsync(Ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        process.ExitCode.ShouldBe(0, $"codegen write failed:\n{await output}\n{await errors}");
    }

    /// <summary>Every generated file below <paramref name="root"/> by its relative path, with its text (line endings normalized).</summary>
    private static Dictionary<string, string> Files(string root) =>
        Directory.Exists(root)
            ? Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories).ToDictionary(
                f => Path.GetRelativePath(root, f).Replace('\\', '/'),
                f => File.ReadAllText(f).ReplaceLineEndings("\n"),
                StringComparer.Ordinal)
            : [];

    /// <summary>
    /// The manager as its own build put it (not the copy beside the tests: JasperFx's command line scans the assemblies
    /// of the folder it runs from, and the test runner's are not loadable there).
    /// </summary>
    private static string ManagerDll(string project)
    {
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var path = Path.Combine(project, "bin", configuration, "net10.0", "propeller-manager.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"{path} is not built (dotnet build -c {configuration})", path);
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Propeller.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Propeller.sln not found above " + AppContext.BaseDirectory);
    }
}
