using System.Net.Http.Json;
using System.Text.Json;

namespace Propeller.EndToEnd.Tests;

/// <summary>The demo and the task outcomes, through the manager's HTTP API, with real proplet processes.</summary>
[Collection("e2e")]
public sealed class TaskFlowTests(SharedCluster shared)
{
    private const int Completed = 3;
    private const int Failed = 4;
    private const int Interrupted = 6;

    private Cluster Cluster => shared.Cluster;

    [Fact]
    public async Task GivenTheDemoTask_WhenStarted_ThenTheResultIs42AndTheHistoryTellsTheStory()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(new { name = "main", file = Modules.AdditionBase64, inputs = new[] { 10, 32 } }, ct);
        await Cluster.StartTaskAsync(id, ct);

        var task = await Cluster.WaitForTaskAsync(id, t => State(t) is Completed or Failed, ct);

        State(task).ShouldBe(Completed, task.GetRawText());
        task.GetProperty("results").GetString().ShouldBe("42");
        shared.PropletIds.ShouldContain(task.GetProperty("proplet_id").GetString());
        var types = (await Cluster.HistoryAsync(id, ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
    }

    [Fact]
    public async Task GivenAWasiProgram_WhenRun_ThenItsStdoutIsTheResult()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(new { name = "_start", file = Convert.ToBase64String(Modules.Hello) }, ct);
        await Cluster.StartTaskAsync(id, ct);

        var task = await Cluster.WaitForTaskAsync(id, t => State(t) is Completed or Failed, ct);

        State(task).ShouldBe(Completed, task.GetRawText());
        task.GetProperty("results").GetString().ShouldBe("hello from wasi\n");
    }

    [Fact]
    public async Task GivenAWasiProgramFromC_WhenRunWithInputsEnvAndAPreopenedFile_ThenItSeesThemAll()
    {
        var ct = TestContext.Current.CancellationToken;
        var data = Path.Combine(shared.DataDir.FullName, "in.txt");
        await File.WriteAllTextAsync(data, "from-host\n", ct);
        var id = await Cluster.CreateTaskAsync(
            new
            {
                name = "_start",
                file = Convert.ToBase64String(CPrograms.Get("echo")),
                inputs = new[] { "hello", "world" },
                env = new Dictionary<string, string> { ["GREETING"] = "hi", ["DATA_FILE"] = data },
            },
            ct);
        await Cluster.StartTaskAsync(id, ct);

        var task = await Cluster.WaitForTaskAsync(id, t => State(t) is Completed or Failed, ct);

        State(task).ShouldBe(Completed, task.GetRawText());
        task.GetProperty("results").GetString().ShouldBe("hello world\ngreeting=hi proplet=set data=from-host\n");
    }

    [Fact]
    public async Task GivenATrappingTask_WhenRun_ThenItFailsWithTheTrapMessage()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Modules.Trap) }, ct);
        await Cluster.StartTaskAsync(id, ct);

        var task = await Cluster.WaitForTaskAsync(id, t => State(t) is Completed or Failed, ct);

        State(task).ShouldBe(Failed, task.GetRawText());
        task.GetProperty("error").GetString().ShouldNotBeNull().ShouldContain("wasm trap: unreachable");
    }

    [Fact]
    public async Task GivenALongRunningTask_WhenStopped_ThenThePropletReallyStopsIt()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Modules.Spin) }, ct);
        await Cluster.StartTaskAsync(id, ct);
        await Cluster.WaitUntilAsync(
            "the proplet to run it",
            () => Task.FromResult(Cluster.Processes.Any(p => p.Output.Contains($"Task {id} accepted", StringComparison.Ordinal))),
            TimeSpan.FromSeconds(60),
            ct);

        using var stop = await Cluster.Http.PostAsync($"/tasks/{id}/stop", null, ct);
        stop.IsSuccessStatusCode.ShouldBeTrue(await stop.Content.ReadAsStringAsync(ct));

        var task = await Cluster.WaitForTaskAsync(id, t => State(t) == Interrupted, ct);
        State(task).ShouldBe(Interrupted);
        await Cluster.WaitUntilAsync(
            "the proplet to end the guest",
            () => Task.FromResult(Cluster.Processes.Any(p => p.Output.Contains($"Task {id} failed: Task {id} was stopped before completion", StringComparison.Ordinal))),
            TimeSpan.FromSeconds(60),
            ct);
    }

    /// <summary>
    /// A daemon is completed once it started (its empty result, as the original), and goes on running on its proplet:
    /// it can be stopped through the API, which the proplet does (before, the manager refused to stop a completed task:
    /// 409, and the daemon ran until its proplet ended), and it cannot be deleted before.
    /// </summary>
    [Fact]
    public async Task GivenADaemonCompletedOnceStarted_WhenStopped_ThenThePropletStopsItAndTheTaskIsInterrupted()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Modules.Spin), daemon = true }, ct);
        await Cluster.StartTaskAsync(id, ct);
        (await Cluster.WaitForTaskAsync(id, t => State(t) is Completed or Failed, ct)).GetProperty("results").GetString().ShouldBe("");

        using (var delete = await Cluster.Http.DeleteAsync($"/tasks/{id}", ct))
        {
            delete.StatusCode.ShouldBe(System.Net.HttpStatusCode.Conflict, await delete.Content.ReadAsStringAsync(ct));
        }

        using var stop = await Cluster.Http.PostAsync($"/tasks/{id}/stop", null, ct);
        stop.IsSuccessStatusCode.ShouldBeTrue(await stop.Content.ReadAsStringAsync(ct));
        State(await Cluster.WaitForTaskAsync(id, t => State(t) == Interrupted, ct)).ShouldBe(Interrupted);
        await Cluster.WaitUntilAsync(
            "the proplet to end the daemon",
            () => Task.FromResult(Cluster.Processes.Any(p => p.Output.Contains($"Task {id} failed: Task {id} was stopped before completion", StringComparison.Ordinal))),
            TimeSpan.FromSeconds(60),
            ct);
        using var deleted = await Cluster.Http.DeleteAsync($"/tasks/{id}", ct);
        deleted.IsSuccessStatusCode.ShouldBeTrue(await deleted.Content.ReadAsStringAsync(ct));
    }

    /// <summary>
    /// A daemon that ends on its own: its proplet sends the end (the original sends nothing, and the task was taken for
    /// serving for ever: a stop went to a proplet that no longer ran it, and the delete wanted one first). One that
    /// returns stays Completed with what it produced and can be deleted at once; one that traps fails with its error.
    /// </summary>
    [Fact]
    public async Task GivenDaemonsThatEndOnTheirOwn_WhenTheyEnd_ThenTheTaskSaysSo()
    {
        var ct = TestContext.Current.CancellationToken;
        var returns = await Cluster.CreateTaskAsync(new { name = "main", file = Modules.AdditionBase64, inputs = new[] { 2, 3 }, daemon = true }, ct);
        var traps = await Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Modules.Trap), daemon = true }, ct);
        await Cluster.StartTaskAsync(returns, ct);
        await Cluster.StartTaskAsync(traps, ct);

        await Cluster.WaitUntilAsync(
            "the daemon's end recorded",
            async () => (await Cluster.Http.GetStringAsync($"/tasks/{returns}/history", ct)).Contains("task.serving_ended.v1", StringComparison.Ordinal),
            TimeSpan.FromSeconds(60),
            ct);
        var ended = await Cluster.Http.GetFromJsonAsync<JsonElement>($"/tasks/{returns}", ct);
        (State(ended), ended.GetProperty("results").GetString()).ShouldBe((Completed, "5"));
        using (var deleted = await Cluster.Http.DeleteAsync($"/tasks/{returns}", ct))
        {
            deleted.IsSuccessStatusCode.ShouldBeTrue(await deleted.Content.ReadAsStringAsync(ct));
        }

        var failed = await Cluster.WaitForTaskAsync(traps, t => State(t) == Failed, ct);
        failed.GetProperty("error").GetString().ShouldNotBeNullOrEmpty();
        var types = (await Cluster.Http.GetFromJsonAsync<JsonElement>($"/tasks/{traps}/history", ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldContain("task.completed.v1"); // started, then failed
        types[^1].ShouldBe("task.failed.v1");
    }

    [Fact]
    public async Task Given200Tasks_WhenStartedOverThreeProplets_ThenEachCompletesExactlyOnce()
    {
        var ct = TestContext.Current.CancellationToken;
        var ids = new List<string>();
        for (var i = 0; i < 200; i++)
        {
            ids.Add(await Cluster.CreateTaskAsync(new { name = "main", file = Modules.AdditionBase64, inputs = new[] { i, 1000 } }, ct));
        }

        foreach (var id in ids)
        {
            await Cluster.StartTaskAsync(id, ct);
        }

        var placed = new HashSet<string>();
        for (var i = 0; i < ids.Count; i++)
        {
            var task = await Cluster.WaitForTaskAsync(ids[i], t => State(t) is Completed or Failed, ct, TimeSpan.FromSeconds(120));
            State(task).ShouldBe(Completed, task.GetRawText());
            task.GetProperty("results").GetString().ShouldBe((i + 1000).ToString(System.Globalization.CultureInfo.InvariantCulture));
            placed.Add(task.GetProperty("proplet_id").GetString()!);
            var completions = (await Cluster.HistoryAsync(ids[i], ct)).EnumerateArray().Count(e => e.GetProperty("type").GetString() == "task.completed.v1");
            completions.ShouldBe(1);
        }

        placed.Count.ShouldBe(3, "every proplet took a share");
    }

    private static int State(JsonElement task) => task.GetProperty("state").GetInt32();
}
