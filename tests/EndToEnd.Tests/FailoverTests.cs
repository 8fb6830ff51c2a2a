using Propeller.Tests.Shared;

namespace Propeller.EndToEnd.Tests;

/// <summary>A proplet dies (SIGKILL) with a task on it: its Last Will marks it offline and the manager re-dispatches;
/// one whose link drops and comes straight back keeps its task.</summary>
[Collection("e2e")]
public sealed class FailoverTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("e2e-failover");

    public void Dispose() => _dir.Delete(true);

    [Fact]
    public async Task GivenAPropletKilledMidTask_WhenItsLastWillArrives_ThenTheTaskCompletesOnASecondProplet()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var cluster = await Cluster.StartAsync("e2e_failover", new Dictionary<string, string> { ["MANAGER_PROPLET_LIVENESS_WINDOW"] = "5" }, ct);

        // The first proplet never finishes: its "external runtime" prints forever (and dies of SIGPIPE with it).
        var hang = Path.Combine(_dir.FullName, "hang.sh");
        await File.WriteAllTextAsync(hang, "#!/bin/sh\nwhile :; do echo .; sleep 0.2; done\n", ct);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(hang, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        }

        var (first, firstProcess) = await cluster.StartPropletAsync(new Dictionary<string, string> { ["PROPLET_EXTERNAL_WASM_RUNTIME"] = hang }, ct);
        var id = await cluster.CreateTaskAsync(new { name = "main", file = Modules.AdditionBase64, inputs = new[] { 10, 32 } }, ct);
        await cluster.StartTaskAsync(id, ct);
        await cluster.WaitUntilAsync(
            "the first proplet to run it",
            () => Task.FromResult(firstProcess.Output.Contains($"Task {id} accepted", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60),
            ct);

        var (second, _) = await cluster.StartPropletAsync(null, ct);
        firstProcess.Kill();

        var task = await cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() is 3 or 4, ct, TimeSpan.FromSeconds(90));
        task.GetProperty("state").GetInt32().ShouldBe(3, task.GetRawText());
        task.GetProperty("results").GetString().ShouldBe("42");
        task.GetProperty("proplet_id").GetString().ShouldBe(second);
        var dispatches = (await cluster.HistoryAsync(id, ct)).EnumerateArray()
            .Where(e => e.GetProperty("type").GetString() == "task.dispatched.v1")
            .Select(e => e.GetProperty("data").GetProperty("proplet_id").GetString())
            .ToList();
        dispatches.ShouldBe([first, second]);
    }

    /// <summary>
    /// A daemon is completed once it started and runs on; its proplet is killed and comes back under its id. The daemon
    /// runs there again (its start sent again when the proplet reports it does not hold it, or its re-dispatch after the
    /// Last Will), and the API's stop ends it in the new process. Before, the task stayed "serving" with nothing running.
    /// </summary>
    [Fact]
    public async Task GivenADaemonWhosePropletIsKilled_WhenThePropletComesBack_ThenTheDaemonRunsThereAgainAndStops()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var cluster = await Cluster.StartAsync("e2e_failover_daemon", new Dictionary<string, string> { ["MANAGER_PROPLET_LIVENESS_WINDOW"] = "5" }, ct);
        var (proplet, process) = await cluster.StartPropletAsync(null, ct);
        var id = await cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Modules.Spin), daemon = true }, ct);
        await cluster.StartTaskAsync(id, ct);
        await cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 3, ct);
        process.Output.ShouldContain($"Task {id} accepted");

        process.Kill();
        var (_, again) = await cluster.StartPropletAsync(null, ct, proplet);
        await cluster.WaitUntilAsync(
            "the daemon to run on the proplet again",
            () => Task.FromResult(again.Output.Contains($"Task {id} accepted", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(90),
            ct,
            () => again.Output);
        var serving = await cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 3, ct);
        serving.GetProperty("proplet_id").GetString().ShouldBe(proplet);

        using var stop = await cluster.Http.PostAsync($"/tasks/{id}/stop", null, ct);
        stop.IsSuccessStatusCode.ShouldBeTrue(await stop.Content.ReadAsStringAsync(ct));
        await cluster.WaitUntilAsync(
            "the proplet to end the daemon",
            () => Task.FromResult(again.Output.Contains($"Task {id} failed: Task {id} was stopped before completion", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60),
            ct);
    }

    /// <summary>
    /// The proplet's link to the broker drops and comes straight back while its task runs: the broker publishes its Last
    /// Will and the manager marks it offline, but the proplet reconnects and reports the task it holds within
    /// MANAGER_OFFLINE_REDISPATCH_DELAY, so the task is not re-dispatched (stopped there and run again): its one run
    /// completes it.
    /// </summary>
    [Fact]
    public async Task GivenAPropletWhoseLinkDropsAndComesStraightBack_WhenItsTaskEnds_ThenItsOneRunCompletesIt()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var cluster = await Cluster.StartAsync("e2e_failover_blip", null, ct);
        var broker = new Uri(Cluster.Mqtt);
        await using var link = TcpRelay.Start(broker.Host, broker.Port);
        var (_, process) = await cluster.StartPropletAsync(new Dictionary<string, string> { ["PROPLET_MQTT_ADDRESS"] = $"tcp://127.0.0.1:{link.Port}" }, ct);
        var id = await cluster.CreateTaskAsync(new { name = "_start", file = Convert.ToBase64String(Modules.Sleeps(TimeSpan.FromSeconds(4), forever: false)) }, ct);
        await cluster.StartTaskAsync(id, ct);
        await cluster.WaitUntilAsync("the proplet to run it", () => Task.FromResult(process.Output.Contains($"Task {id} accepted", StringComparison.Ordinal)), TimeSpan.FromSeconds(60), ct);

        link.Cut();
        await link.RestoreAsync();
        await cluster.WaitUntilAsync(
            "the proplet to connect again and report what it holds",
            () => Task.FromResult(process.Output.Split("Published discovery").Length > 2),
            TimeSpan.FromSeconds(20),
            ct);

        var task = await cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() is 3 or 4, ct, TimeSpan.FromSeconds(60));
        task.GetProperty("state").GetInt32().ShouldBe(3, task.GetRawText());
        var types = (await cluster.HistoryAsync(id, ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"], process.Output);
    }
}
