namespace Propeller.EndToEnd.Tests;

/// <summary>A proplet whose PROPLET_EXTERNAL_WASM_RUNTIME is another propeller-proplet binary: the child gets the
/// original's wasmtime-shaped command line (`run --invoke main FILE 10 32`), and its stdout is the result unchanged.</summary>
[Collection("e2e")]
public sealed class ExternalRuntimeTests
{
    [Fact]
    public async Task GivenAnExternalRuntime_WhenTasksRun_ThenStdoutIsTheResultAndFailuresCarryTheStatus()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var cluster = await Cluster.StartAsync("e2e_external", null, ct);
        var runtime = Cluster.Built("Edge", "propeller-proplet");
        await cluster.StartPropletAsync(new Dictionary<string, string> { ["PROPLET_EXTERNAL_WASM_RUNTIME"] = runtime }, ct);

        var add = await cluster.CreateTaskAsync(new { name = "main", file = Modules.AdditionBase64, inputs = new[] { 10, 32 } }, ct);
        var hello = await cluster.CreateTaskAsync(new { name = "_start", file = Convert.ToBase64String(Modules.Hello) }, ct);
        var trap = await cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Modules.Trap) }, ct);
        foreach (var id in new[] { add, hello, trap })
        {
            await cluster.StartTaskAsync(id, ct);
        }

        var added = await cluster.WaitForTaskAsync(add, t => t.GetProperty("state").GetInt32() is 3 or 4, ct);
        added.GetProperty("results").GetString().ShouldBe("42\n", added.GetRawText());
        var greeted = await cluster.WaitForTaskAsync(hello, t => t.GetProperty("state").GetInt32() is 3 or 4, ct);
        greeted.GetProperty("results").GetString().ShouldBe("hello from wasi\n", greeted.GetRawText());
        var trapped = await cluster.WaitForTaskAsync(trap, t => t.GetProperty("state").GetInt32() is 3 or 4, ct);
        trapped.GetProperty("state").GetInt32().ShouldBe(4);
        trapped.GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith("Process exited with status: exit status: 134, stderr: error: wasm trap:");
    }
}
