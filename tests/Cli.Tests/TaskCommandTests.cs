using System.Text.Json;

namespace Propeller.Cli.Tests;

/// <summary>`propeller task ...` against a real manager and proplet.</summary>
[Collection("cli")]
public sealed class TaskCommandTests(CliCluster cluster) : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("cli-tests");

    private string Url => cluster.Url;

    private string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose() => _dir.Delete(true);

    [Fact]
    public async Task Run_OfTheAdditionModule_PrintsTheResultAndExits0()
    {
        var add = Write("add.wasm", Wasm.Addition);

        var run = await Cli.RunAsync(Url, "task", "run", add, "--inputs", "10,32");

        run.Exit.ShouldBe(0, run.ToString());
        run.Out.Trim().ShouldBe("42");
        run.Err.ShouldContain($"completed on proplet {cluster.PropletId}");
    }

    [Fact]
    public async Task Run_WithWatch_PrintsEveryStateAndTheResult()
    {
        var add = Write("add.wasm", Wasm.Addition);

        var run = await Cli.RunAsync(Url, "task", "run", add, "--inputs", "1,2", "--function", "main", "--watch");

        run.Exit.ShouldBe(0, run.ToString());
        var lines = run.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).ToList();
        lines[0].ShouldStartWith("task ");
        lines.ShouldContain(l => l.EndsWith("completed on " + cluster.PropletId, StringComparison.Ordinal), run.ToString());
        lines[^1].ShouldBe("3");
    }

    [Fact]
    public async Task Run_OfATrappingModule_ExitsNonZeroWithTheError()
    {
        var trap = Write("trap.wasm", Wasm.Trap);

        var run = await Cli.RunAsync(Url, "task", "run", trap);

        run.Exit.ShouldBe(1, run.ToString());
        run.Out.ShouldBeEmpty();
        run.Err.ShouldContain("failed");
        run.Err.ShouldContain("unreachable");
    }

    [Fact]
    public async Task Run_InJson_PrintsTheCompletedTask()
    {
        var run = await Cli.RunAsync(Url, "task", "run", Write("add.wasm", Wasm.Addition), "-i", "2,3", "-o", "json");

        run.Exit.ShouldBe(0, run.ToString());
        run.Json.GetProperty("state").GetInt32().ShouldBe(3);
        run.Json.GetProperty("results").GetString().ShouldBe("5");
    }

    [Fact]
    public async Task CreateListGetStartHistoryStopDelete_WorkTogether()
    {
        var name = "cli-" + Guid.NewGuid().ToString("N")[..8];
        var created = await Cli.RunAsync(Url, "task", "create", "--name", name, "--file", Write("spin.wasm", Wasm.Spin), "--metadata", """{"suite":"cli"}""", "-o", "json", "--user", "alice");
        created.Exit.ShouldBe(0, created.ToString());
        var id = created.Json.GetProperty("id").GetString()!;

        var list = await Cli.RunAsync(Url, "task", "list", "--name", name);
        list.Exit.ShouldBe(0, list.ToString());
        list.Out.ShouldContain(id);
        list.Out.ShouldContain("pending");
        list.Out.ShouldContain("1-1 of 1");
        (await Cli.RunAsync(Url, "task", "list", "--metadata", """{"suite":"cli"}""", "--state", "pending", "-o", "json")).Json
            .GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("id").GetString()).ShouldContain(id);

        (await Cli.RunAsync(Url, "task", "start", id)).Out.Trim().ShouldBe($"started {id}");
        await cluster.Cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 2, TestContext.Current.CancellationToken);
        var get = await Cli.RunAsync(Url, "task", "get", id);
        get.Out.ShouldContain("running");
        get.Out.ShouldContain(cluster.PropletId);

        (await Cli.RunAsync(Url, "task", "stop", id)).Exit.ShouldBe(0);
        var history = await Cli.RunAsync(Url, "task", "history", id);
        history.Exit.ShouldBe(0, history.ToString());
        history.Out.ShouldContain("task.created.v1");
        history.Out.ShouldContain("task.stopped.v1");
        history.Out.ShouldContain("alice");
        var lastOne = await Cli.RunAsync(Url, "task", "history", id, "--last", "1", "-o", "json");
        lastOne.Exit.ShouldBe(0, lastOne.ToString());
        lastOne.Json.GetArrayLength().ShouldBe(1); // the newest event (the stopped run's result may come after the stop)
        lastOne.Json[0].GetProperty("version").GetInt64().ShouldBeGreaterThanOrEqualTo(4);
        (await Cli.RunAsync(Url, "task", "history", id, "--last", "0")).Exit.ShouldBe(2);
        (await Cli.RunAsync(Url, "task", "get", id, "--version", "1", "-o", "json")).Json.GetProperty("state").GetInt32().ShouldBe(0);

        var deleted = await Cli.RunAsync(Url, "task", "delete", id);
        deleted.Exit.ShouldBe(0, deleted.ToString());
        var gone = await Cli.RunAsync(Url, "task", "get", id);
        gone.Exit.ShouldBe(1);
        gone.Err.Trim().ShouldBe($"propeller: 404 Not Found from GET /tasks/{id}: task not found");
    }

    /// <summary>A watch of a task still pending follows its start (by another command) to its outcome.</summary>
    [Fact]
    public async Task Watch_OfAPendingTask_FollowsItsStartToItsOutcome()
    {
        var created = await Cli.RunAsync(Url, "task", "create", "-n", "main", "--file", Write("add.wasm", Wasm.Addition), "-i", "20,22", "-o", "json");
        var id = created.Json.GetProperty("id").GetString()!;
        var watch = Cli.RunAsync(Url, "task", "watch", id, "--timeout", "60s");
        (await Cli.RunAsync(Url, "task", "start", id)).Exit.ShouldBe(0);

        var watched = await watch;

        watched.Exit.ShouldBe(0, watched.ToString());
        watched.Out.ShouldContain("completed on " + cluster.PropletId);
        watched.Out.Trim().Split('\n')[^1].ShouldBe("42");
    }

    [Fact]
    public async Task Watch_ThatTimesOut_Exits4()
    {
        var id = (await Cli.RunAsync(Url, "task", "create", "-n", "never-started", "-o", "json")).Json.GetProperty("id").GetString()!;

        var watched = await Cli.RunAsync(Url, "task", "watch", id, "--timeout", "300ms");

        watched.Exit.ShouldBe(4, watched.ToString());
        watched.Err.ShouldContain("did not end within");
    }

    [Fact]
    public async Task BadInput_IsOneClearLine_AndExit2()
    {
        var notWasm = Write("text.wasm", "hello, not wasm"u8.ToArray());
        var bad = await Cli.RunAsync(Url, "task", "run", notWasm);
        bad.Exit.ShouldBe(2);
        bad.Err.Trim().ShouldBe($"propeller: {notWasm} is not a WebAssembly module (it must start with \\0asm)");

        var missing = await Cli.RunAsync(Url, "task", "run", Path.Combine(_dir.FullName, "missing.wasm"));
        missing.Exit.ShouldBe(2);
        missing.Err.ShouldStartWith("propeller: cannot read");

        var env = await Cli.RunAsync(Url, "task", "create", "-n", "x", "--env", "NOEQUALS");
        env.Exit.ShouldBe(2);
        env.Err.Trim().ShouldBe("propeller: --env expects KEY=VALUE, got 'NOEQUALS'");

        var usage = await Cli.RunAsync(Url, "task", "list", "--state", "sleeping");
        usage.Exit.ShouldBe(2);
        usage.Err.ShouldContain("sleeping");

        // A task id is a GUID: anything else is refused before the manager is asked (its answer was a 400, exit 1).
        var rejected = await Cli.RunAsync(Url, "task", "start", "not-a-uuid");
        rejected.Exit.ShouldBe(2);
        rejected.Err.ShouldStartWith("propeller: the task id must be a task's id, such as 0193a5b0-7c2e-7000-8000-000000000001 (got 'not-a-uuid')");
    }
}
