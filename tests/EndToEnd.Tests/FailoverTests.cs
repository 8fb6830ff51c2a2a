namespace Propeller.EndToEnd.Tests;

/// <summary>A proplet dies (SIGKILL) with a task on it: its Last Will marks it offline and the manager re-dispatches.</summary>
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
}
