using System.Diagnostics;

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

    /// <summary>
    /// An HTTP proxy component under an external runtime is served by it, as the original's host runtime does (`serve
    /// -Shttp --addr 0.0.0.0:N`, here `propeller-proplet serve`, shaped like `wasmtime serve`): "started at port N", real
    /// requests answered, and the API's stop ends the runtime and closes the port. Before, it was run like any component
    /// and failed.
    /// </summary>
    [Fact]
    public async Task GivenAnExternalRuntime_WhenAProxyComponentIsStarted_ThenTheRuntimeServesItUntilStopped()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var cluster = await Cluster.StartAsync("e2e_external_serve", null, ct);
        var runtime = Cluster.Built("Edge", "propeller-proplet");
        await cluster.StartPropletAsync(new Dictionary<string, string> { ["PROPLET_EXTERNAL_WASM_RUNTIME"] = runtime }, ct);
        await ServedProxies.ServeUntilStoppedAsync(cluster, Cluster.FreePort(), ct);
    }

    /// <summary>`propeller-proplet serve` on its own: serves until SIGTERM (exit 0); a core module is refused (1), and so
    /// are bad arguments (2).</summary>
    [Fact]
    public async Task GivenTheServeCommand_WhenRunAlone_ThenItServesUntilTerminatedAndRefusesWhatItCannotServe()
    {
        var ct = TestContext.Current.CancellationToken;
        var dir = Directory.CreateTempSubdirectory("serve");
        try
        {
            var proxy = Path.Combine(dir.FullName, "proxy.wasm");
            var core = Path.Combine(dir.FullName, "add.wasm");
            await File.WriteAllBytesAsync(proxy, Components.Proxy, ct);
            await File.WriteAllBytesAsync(core, Modules.Addition, ct);
            var runtime = Cluster.Built("Edge", "propeller-proplet");
            var port = Cluster.FreePort();

            using var served = Process.Start(Serve(runtime, "-Shttp", "--addr", $"127.0.0.1:{port}", "--env", "GREETING=hi", proxy))!;
            var listening = await served.StandardError.ReadLineAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), ct);
            listening.ShouldBe($"Serving HTTP on http://127.0.0.1:{port}/");
            using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) })
            {
                (await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/"), ct)).ShouldBe("hello, world");
            }

            using (var term = Process.Start("kill", ["-TERM", served.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await term.WaitForExitAsync(ct);
            }

            await served.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
            served.ExitCode.ShouldBe(0);

            foreach (var (args, code, says) in new[]
            {
                (new[] { "--addr", $"127.0.0.1:{Cluster.FreePort()}", core }, 1, "is not an HTTP proxy component"),
                (new[] { "--addr", "nowhere", proxy }, 2, "expected HOST:PORT"),
                (new[] { "--fuel", "1", proxy }, 2, "unknown option --fuel"),
                (Array.Empty<string>(), 2, "usage: propeller-proplet serve"),
            })
            {
                using var refused = Process.Start(Serve(runtime, args))!;
                var stderr = await refused.StandardError.ReadToEndAsync(ct);
                await refused.WaitForExitAsync(ct);
                (refused.ExitCode, stderr.Contains(says, StringComparison.Ordinal)).ShouldBe((code, true), stderr);
            }
        }
        finally
        {
            dir.Delete(true);
        }
    }

    private static ProcessStartInfo Serve(string runtime, params string[] args)
    {
        var info = new ProcessStartInfo(runtime) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add("serve");
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        return info;
    }
}
