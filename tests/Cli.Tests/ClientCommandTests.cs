using System.Diagnostics;

namespace Propeller.Cli.Tests;

/// <summary>Proplets, plugins, global options, errors, help and completion.</summary>
[Collection("cli")]
public sealed class ClientCommandTests(CliCluster cluster)
{
    private string Url => cluster.Url;

    [Fact]
    public async Task PropletList_AndGet_ShowTheAliveProplet()
    {
        var list = await Cli.RunAsync(Url, "proplet", "list");
        list.Exit.ShouldBe(0, list.ToString());
        list.Out.ShouldContain(cluster.PropletId);
        list.Out.ShouldContain("alive");

        var get = await Cli.RunAsync(Url, "proplet", "get", cluster.PropletId);
        get.Exit.ShouldBe(0, get.ToString());
        get.Out.ShouldContain("last heartbeat");
        (await Cli.RunAsync(Url, "proplet", "get", cluster.PropletId, "-o", "json")).Json.GetProperty("proplet").GetProperty("alive").GetBoolean().ShouldBeTrue();
    }

    [Fact]
    public async Task PluginList_WithoutADirectory_SaysSo_AndReloadIsAClearError()
    {
        var list = await Cli.RunAsync(Url, "plugin", "list");
        list.Exit.ShouldBe(0, list.ToString());
        list.Out.ShouldContain("no plugin directory configured");

        var reload = await Cli.RunAsync(Url, "plugin", "reload");
        reload.Exit.ShouldBe(1);
        reload.Err.Trim().ShouldBe("propeller: 409 Conflict from POST /plugins/reload: no plugin directory is configured (MANAGER_PLUGIN_DIR)");
    }

    [Fact]
    public async Task AnUnreachableManager_IsOneLine_AndExit3()
    {
        var down = await Cli.RunAsync("http://127.0.0.1:1", "task", "list");

        down.Exit.ShouldBe(3);
        down.Err.Trim().ShouldStartWith("propeller: cannot reach the manager at http://127.0.0.1:1/:");
        down.Err.Trim().Split('\n').Length.ShouldBe(1);
    }

    [Fact]
    public async Task TheUrlFlag_WinsOverTheEnvironment_AndABadUrlIsAUsageError()
    {
        var flag = await Cli.RunAsync("http://127.0.0.1:1", "--url", Url, "proplet", "list");
        flag.Exit.ShouldBe(0, flag.ToString());

        var bad = await Cli.RunAsync("ftp://nowhere", "task", "list");
        bad.Exit.ShouldBe(2);
        bad.Err.Trim().ShouldBe("propeller: --url must be an http or https URL, got 'ftp://nowhere'");
    }

    [Fact]
    public async Task Help_IsEverywhere()
    {
        foreach (var args in new[] { new[] { "--help" }, ["task", "--help"], ["task", "run", "-h"], ["proplet", "get", "--help"], ["plugin", "reload", "--help"] })
        {
            var help = await Cli.RunAsync(Url, args);
            help.Exit.ShouldBe(0, help.ToString());
            help.Out.ShouldContain("Usage:");
        }
    }

    [Fact]
    public async Task Completion_ListsSubcommands_AndPrintsAShellScript()
    {
        var suggest = await Cli.RunAsync(Url, "[suggest:5]", "task ");
        suggest.Out.Split('\n', StringSplitOptions.TrimEntries).ShouldContain("run");

        var bash = await Cli.RunAsync(Url, "completion", "bash");
        bash.Exit.ShouldBe(0);
        bash.Out.ShouldContain("complete -o default -F _propeller_complete propeller");
    }

    /// <summary>
    /// The built program (propeller.dll, as a shell runs it) reads PROPELLER_URL and exits with the task's outcome: 0
    /// and the result when it completed, 1 and the error when it failed (a trap).
    /// </summary>
    [Fact]
    public async Task TheBuiltProgram_ReadsPropellerUrl_AndExitsWithTheTasksOutcome()
    {
        var dir = Directory.CreateTempSubdirectory("cli-program");
        try
        {
            var add = Path.Combine(dir.FullName, "add.wasm");
            var trap = Path.Combine(dir.FullName, "trap.wasm");
            await File.WriteAllBytesAsync(add, Wasm.Addition, TestContext.Current.CancellationToken);
            await File.WriteAllBytesAsync(trap, Wasm.Trap, TestContext.Current.CancellationToken);

            var (completedExit, completedOut, completedErr) = await RunProgramAsync("task", "run", add, "--inputs", "10,32");
            var (failedExit, failedOut, failedErr) = await RunProgramAsync("task", "run", trap);

            completedExit.ShouldBe(0, completedErr);
            completedOut.Trim().ShouldBe("42", completedErr);
            failedExit.ShouldBe(1, failedErr);
            failedOut.ShouldBeEmpty(failedErr);
            failedErr.ShouldContain("failed", Case.Sensitive, failedErr);
            failedErr.ShouldContain("unreachable", Case.Sensitive, failedErr);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    private async Task<(int Exit, string Out, string Err)> RunProgramAsync(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "propeller.dll"));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["PROPELLER_URL"] = Url;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        return (process.ExitCode, await stdout, await stderr);
    }
}
