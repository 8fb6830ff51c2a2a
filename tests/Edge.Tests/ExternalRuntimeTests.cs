using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

public sealed class ExternalRuntimeTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("external-runtime");

    public void Dispose() => _dir.Delete(true);

    [Fact]
    public void GivenACoreTask_WhenTheCommandLineIsBuilt_ThenItHasTheOriginalsShape()
    {
        var request = Request("add", ["10", "20"], ["--dir", "/tmp"], new Dictionary<string, string> { ["K"] = "V" });

        ExternalRuntime.Arguments(request, "/tmp/proplet_x.wasm", component: false, "me")
            .ShouldBe(["run", "--invoke", "add", "--dir", "/tmp", "--env", "K=V", "--env", "PROPLET_ID=me", "/tmp/proplet_x.wasm", "10", "20"]);
        ExternalRuntime.Arguments(Request("_start", ["a"], [], []), "/f.wasm", component: false, "me").ShouldBe(["run", "--env", "PROPLET_ID=me", "/f.wasm", "a"]);
        ExternalRuntime.Arguments(Request("add", [], ["--invoke", "x"], []), "/f.wasm", component: false, "me").ShouldBe(["run", "--invoke", "x", "--env", "PROPLET_ID=me", "/f.wasm"]);
    }

    /// <summary>The limit flags are the proplet's: the wasmtime CLI refuses them ("unexpected argument") and
    /// `propeller-proplet run` the <c>--flag=N</c> form, so the child gets the other arguments only.</summary>
    [Fact]
    public void GivenLimitFlagsInCliArgs_WhenTheCommandLineIsBuilt_ThenTheyAreNotPassedOn()
    {
        var request = Request("_start", ["a"], ["--timeout", "5", "--dir", "/tmp", "--fuel=10", "--max-memory", "4", "--timeout=2.5", "--fuelish"], []);

        ExternalRuntime.Arguments(request, "/f.wasm", component: false, "me").ShouldBe(["run", "--dir", "/tmp", "--fuelish", "--env", "PROPLET_ID=me", "/f.wasm", "a"]);
    }

    /// <summary>A component's custom export is called as wasmtime calls one, with its inputs as WAVE literals inside the
    /// call expression and none after the file (spec §6); its command and a named --invoke keep the inputs.</summary>
    [Fact]
    public async Task GivenAComponentWithACustomExport_WhenRun_ThenTheInputsAreInsideTheInvokeExpression()
    {
        byte[] component = [0, 97, 115, 109, 0x0D, 0, 1, 0];
        var echo = "for a; do case \"$a\" in *proplet_*) echo FILE;; *) echo \"$a\";; esac; done";

        var outcome = await RunAsync(echo, Request("add", ["1", "\"x\""], [], []), component);

        outcome.ShouldBe(TaskOutcome.Success("run\n--invoke\nadd(1, \"x\")\n--env\nPROPLET_ID=me\nFILE\n"));
        ExternalRuntime.Arguments(Request("_start", ["a"], [], []), "/f.wasm", component: true, "me").ShouldBe(["run", "--env", "PROPLET_ID=me", "/f.wasm", "a"]);
        ExternalRuntime.Arguments(Request("add", ["1"], ["--invoke", "x(1)"], []), "/f.wasm", component: true, "me").ShouldBe(["run", "--invoke", "x(1)", "--env", "PROPLET_ID=me", "/f.wasm", "1"]);
        ExternalRuntime.Arguments(Request("add", [], [], []), "/f.wasm", component: true, "me").ShouldBe(["run", "--invoke", "add()", "--env", "PROPLET_ID=me", "/f.wasm"]);
    }

    /// <summary>An HTTP proxy component is served as the original's host runtime serves one (spec §6): <c>serve</c>,
    /// <c>-Shttp</c> and <c>--addr 0.0.0.0:PORT</c> unless given, the cli_args (a <c>--port N</c>, which wasmtime serve
    /// refuses, is the port), the env, the file.</summary>
    [Fact]
    public void GivenAProxyComponent_WhenTheServeCommandLineIsBuilt_ThenItHasTheOriginalsShape()
    {
        ExternalRuntime.ServeArguments(Request("proxy", [], ["--dir", "/tmp"], new Dictionary<string, string> { ["K"] = "V" }), "/f.wasm", 8222, "me")
            .ShouldBe(["serve", "-Shttp", "--addr", "0.0.0.0:8222", "--dir", "/tmp", "--env", "K=V", "--env", "PROPLET_ID=me", "/f.wasm"]);
        ExternalRuntime.ServeArguments(Request("proxy", [], ["-Shttp", "--addr", "127.0.0.1:9000", "--timeout", "5"], []), "/f.wasm", 9000, "me")
            .ShouldBe(["serve", "-Shttp", "--addr", "127.0.0.1:9000", "--env", "PROPLET_ID=me", "/f.wasm"]);
        ExternalRuntime.ServeArguments(Request("proxy", [], ["--port", "9001", "--port=9002", "-Scli"], []), "/f.wasm", 9001, "me")
            .ShouldBe(["serve", "-Shttp", "--addr", "0.0.0.0:9001", "-Scli", "--env", "PROPLET_ID=me", "/f.wasm"]);
    }

    /// <summary>
    /// A proxy component's runtime is reported started ("started at port N") once its port takes connections, and serves
    /// until stopped (before, an external runtime ran it like any component, under the task's time limit). One that exits
    /// before it listens is the task's outcome, never reported started.
    /// </summary>
    [Fact]
    public async Task GivenAProxyComponent_WhenServedByTheRuntime_ThenStartedOnceListeningAndStoppedByTheStop()
    {
        var proxy = Propeller.Tests.Shared.Components.Proxy;
        var port = FreePort();
        var serve = "for a; do case \"$a\" in *:[0-9]*) port=${a##*:};; esac; done; sleep 0.5; exec python3 -m http.server --bind 127.0.0.1 \"$port\"";
        using var task = new RunningTask(Request("proxy", [], [$"--addr=127.0.0.1:{port}"], []));
        var runtime = Runtime(serve);
        runtime.ServesHttpProxy(proxy).ShouldBeTrue();
        runtime.ServesHttpProxy(Modules.Addition).ShouldBeFalse();
        var running = runtime.RunAsync(task, proxy, TestContext.Current.CancellationToken);

        (await task.Started.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).ShouldBe($"started at port {port}");
        using (var http = new HttpClient())
        {
            (await http.GetAsync(new Uri($"http://127.0.0.1:{port}/"), TestContext.Current.CancellationToken)).IsSuccessStatusCode.ShouldBeTrue();
        }

        running.IsCompleted.ShouldBeFalse();
        task.Abort(StopReason.Stopped);
        (await running.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).Error.ShouldBe($"Task {task.Id} was stopped before completion");

        using var failing = new RunningTask(Request("proxy", [], [], []));
        var failed = await Runtime("echo 'error: cannot serve' >&2; exit 3").RunAsync(failing, proxy, TestContext.Current.CancellationToken);
        failed.Error.ShouldNotBeNull().ShouldContain("cannot serve");
        failing.Started.IsCompleted.ShouldBeFalse();
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public void GivenBinaryHeaders_WhenClassified_ThenComponentsAreThoseWithAComponentsVersionAndLayer()
    {
        ExternalRuntime.IsComponent([0, 97, 115, 109, 0x0D, 0, 1, 0]).ShouldBeTrue();
        ExternalRuntime.IsComponent([0, 97, 115, 109, 0x0A, 0, 1, 0]).ShouldBeTrue();
        ExternalRuntime.IsComponent(Modules.Addition).ShouldBeFalse();
        ExternalRuntime.IsComponent([0, 97, 115, 109, 0x0D, 0, 0, 0]).ShouldBeFalse();
        ExternalRuntime.IsComponent([0, 97, 115, 109]).ShouldBeFalse();
    }

    [Fact]
    public void GivenARuntimeName_WhenResolved_ThenPathsMustExistAndBareNamesComeFromPath()
    {
        ExternalRuntime.Resolve("sh").ShouldNotBeNull();
        ExternalRuntime.Resolve("/no/such/wasmtime").ShouldBeNull();
        ExternalRuntime.Resolve("no-such-runtime-" + Guid.NewGuid().ToString("N")).ShouldBeNull();
    }

    [Fact]
    public async Task GivenAScriptRuntime_WhenItSucceeds_ThenStdoutIsTheResultUnchanged()
    {
        var outcome = await RunAsync("echo \"$@\" | sed 's#/[^ ]*proplet_[^ ]*#FILE#'; echo \"env=$K\"", Request("add", ["1", "2"], [], new Dictionary<string, string> { ["K"] = "V" }));

        outcome.ShouldBe(TaskOutcome.Success("run --invoke add --env K=V --env PROPLET_ID=me FILE 1 2\nenv=V\n"));
    }

    /// <summary>A task id longer than a file name may be (255 bytes with "proplet_" and ".wasm") still runs: the binary's
    /// file name is cut (before, writing it failed, "internal proplet error: File name too long").</summary>
    [Fact]
    public async Task GivenATaskIdOfThreeHundredCharacters_WhenRunByAnExternalRuntime_ThenItSucceeds()
    {
        var outcome = await RunAsync("test -f \"$(eval echo \\${$#})\" && echo ran", Request("_start", [], [], [], id: new string('x', 300)));

        outcome.ShouldBe(TaskOutcome.Success("ran\n"));
    }

    /// <summary>Every task's env has PROPLET_ID (spec §2.1 step 13), this proplet's id unless the task sets its own: the
    /// child gets it in its environment and, for the guest, as an --env flag.</summary>
    [Fact]
    public async Task GivenATask_WhenRunByAnExternalRuntime_ThenItsEnvHasPropletId()
    {
        var script = "echo \"$@\" | sed 's#/[^ ]*proplet_[^ ]*#FILE#'; echo \"id=$PROPLET_ID\"";

        (await RunAsync(script, Request("_start", [], [], []))).ShouldBe(TaskOutcome.Success("run --env PROPLET_ID=me FILE\nid=me\n"));
        (await RunAsync(script, Request("_start", [], [], new Dictionary<string, string> { ["PROPLET_ID"] = "own" })))
            .ShouldBe(TaskOutcome.Success("run --env PROPLET_ID=own FILE\nid=own\n"));
    }

    [Fact]
    public async Task GivenAScriptRuntime_WhenItFails_ThenTheErrorHasTheStatusAndStderr()
    {
        var outcome = await RunAsync("echo boom >&2; exit 3", Request("main", [], [], []));

        outcome.Error.ShouldBe("Process exited with status: exit status: 3, stderr: boom\n");
    }

    /// <summary>A child killed by a signal that was not the proplet's stop or timeout is reported as Rust reports it (spec
    /// §6); a child that exited with 137 by itself keeps "exit status: 137", though .NET's exit code is 137 for both.</summary>
    [Fact]
    public async Task GivenARuntimeKilledByASignal_WhenItEnds_ThenTheErrorNamesTheSignal()
    {
        var killed = await RunGatedAsync("echo dying >&2; kill -KILL $$");
        var exited = await RunGatedAsync("exit 137");

        killed.Error.ShouldBe("Process exited with status: signal: 9 (SIGKILL), stderr: dying\n");
        exited.Error.ShouldBe("Process exited with status: exit status: 137, stderr: ");
    }

    /// <summary>Runs <paramref name="script"/> once the runtime has the child in hand (the task has its process), so
    /// the child does not end before the runtime starts watching it.</summary>
    private async Task<TaskOutcome> RunGatedAsync(string script)
    {
        var go = Path.Combine(_dir.FullName, "go-" + Guid.NewGuid().ToString("N"));
        using var task = new RunningTask(Request("main", [], [], []));
        var running = Runtime($"while [ ! -e '{go}' ]; do sleep 0.01; done; {script}").RunAsync(task, [0], TestContext.Current.CancellationToken);
        while (task.ProcessId is null && !running.IsCompleted)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        await File.WriteAllTextAsync(go, "", TestContext.Current.CancellationToken);
        return await running.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task GivenARuntimeWritingMoreThanAPipeBuffer_WhenRun_ThenItFinishesAndTheOutputIsBounded()
    {
        var outcome = await RunAsync("head -c 3000000 /dev/zero | tr '\\0' 'x'", Request("main", [], [], []));

        outcome.Results.Length.ShouldBe(4096);
    }

    [Fact]
    public async Task GivenAHangingRuntime_WhenTheTaskIsStopped_ThenTheProcessIsKilled()
    {
        using var task = new RunningTask(Request("main", [], [], []));
        var running = Runtime("exec sleep 60").RunAsync(task, [0], TestContext.Current.CancellationToken);
        while (task.ProcessId is null && !running.IsCompleted)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        task.Abort(StopReason.Stopped);

        (await running.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).Error.ShouldBe($"Task {task.Id} was stopped before completion");
    }

    [Fact]
    public async Task GivenThePropletsDefaultTimeout_WhenAnExternalRuntimeHangs_ThenTheRunnerKillsItAndReportsTheLimit()
    {
        var settings = TestSettings.Create("me") with { TaskTimeout = TimeSpan.FromSeconds(0.3) };
        var published = new InMemoryPublisher();
        using var http = new HttpClient();
        var fetcher = new Propeller.Edge.Fetching.BinaryFetcher(settings, new Propeller.Edge.Fetching.ChunkAssembler(1 << 20, TimeProvider.System), published, http);
        await using var runner = new TaskRunner(settings, Runtime("exec sleep 60"), fetcher, published, null, NullLogger<TaskRunner>.Instance);

        runner.HandleStart(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new { id = "hang", name = "main", file = Modules.AdditionBase64 }));

        var result = await published.NextAsync(Topics.Results, TestContext.Current.CancellationToken);
        result.GetProperty("error").GetString().ShouldBe("Task hang exceeded its time limit of 0.3 s and was stopped");
    }

    /// <summary>Task ids that differ only in characters a file name cannot keep (a.b, a_b) run at once on binaries of
    /// their own, each in a directory only the proplet's user can enter, removed afterwards.</summary>
    [Fact]
    public async Task GivenTwoTasksWhoseIdsMapToOneFileName_WhenRunAtOnce_ThenEachRunsItsOwnBinary()
    {
        var runtime = Runtime("""
            for f; do case "$f" in *.wasm) file="$f";; esac; done
            sleep 0.3
            echo "$(cat "$file") $(stat -c %a "$(dirname "$file")") $file"
            """);
        using var first = new RunningTask(Request("main", [], [], [], "a.b"));
        using var second = new RunningTask(Request("main", [], [], [], "a_b"));

        var outcomes = await Task.WhenAll(
            runtime.RunAsync(first, "first"u8.ToArray(), TestContext.Current.CancellationToken),
            runtime.RunAsync(second, "second"u8.ToArray(), TestContext.Current.CancellationToken));

        var (one, two) = (outcomes[0].Results.Split(' '), outcomes[1].Results.Split(' '));
        (one[0], one[1], two[0], two[1]).ShouldBe(("first", "700", "second", "700"));
        Directory.Exists(Path.GetDirectoryName(one[2].Trim())).ShouldBeFalse();
    }

    /// <summary>A runtime that leaves a process running with its output (`cmd &`) ends when it exits, with the output
    /// written until then, instead of when the process it left ends.</summary>
    [Fact]
    public async Task GivenARuntimeLeavingAProcessHoldingItsOutput_WhenItExits_ThenTheTaskEndsWithWhatWasWritten()
    {
        var left = Path.Combine(_dir.FullName, "left.pid");
        try
        {
            var outcome = await RunAsync($"sleep 60 & echo $! > '{left}'; echo done", Request("main", [], [], [])).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

            outcome.ShouldBe(TaskOutcome.Success("done\n"));
        }
        finally
        {
            KillLeft(left);
        }
    }

    /// <summary>A timeout that fires after the child exited by itself, while its output is still waited for (a process it
    /// left running holds it), does not turn its success into "exceeded its time limit".</summary>
    [Fact]
    public async Task GivenAChildThatExitedWithZero_WhenTheTimeoutFiresWhileItsOutputIsWaitedFor_ThenTheTaskSucceeds()
    {
        var go = Path.Combine(_dir.FullName, "go");
        using var task = new RunningTask(Request("_start", [], [], []));
        var left = Path.Combine(_dir.FullName, "left.pid");
        var running = Runtime($"while [ ! -e '{go}' ]; do sleep 0.01; done; sleep 5 & echo $! > '{left}'; echo done").RunAsync(task, [0], TestContext.Current.CancellationToken);
        while (task.ProcessId is null && !running.IsCompleted)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        await File.WriteAllTextAsync(go, "", TestContext.Current.CancellationToken);
        while (task.ProcessId is not null)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken); // until the child has exited
        }

        running.IsCompleted.ShouldBeFalse(); // its output is still waited for: "sleep 5" holds it
        task.Abort(StopReason.TimedOut);

        (await running.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).ShouldBe(TaskOutcome.Success("done\n"));
        KillLeft(left);
    }

    /// <summary>
    /// Ends the process a test's script left running on purpose (its pid written to <paramref name="pidFile"/>): it
    /// outlived the test, and the test runner found it left behind.
    /// </summary>
    private static void KillLeft(string pidFile)
    {
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid))
        {
            return;
        }

        try
        {
            using var left = Process.GetProcessById(pid);
            left.Kill();
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
        {
            // Already gone.
        }
    }

    private async Task<TaskOutcome> RunAsync(string script, StartRequest request, byte[]? binary = null)
    {
        using var task = new RunningTask(request);
        return await Runtime(script).RunAsync(task, binary ?? [0, 97, 115, 109], TestContext.Current.CancellationToken);
    }

    private ExternalRuntime Runtime(string script)
    {
        var path = Path.Combine(_dir.FullName, "runtime-" + Guid.NewGuid().ToString("N")[..6] + ".sh");
        File.WriteAllText(path, "#!/bin/sh\n" + script + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        return new ExternalRuntime(path, TestSettings.Create("me"), NullLogger<ExternalRuntime>.Instance);
    }

    private static StartRequest Request(string name, string[] inputs, string[] cliArgs, Dictionary<string, string> env, string? id = null) => new(
        new StartMessage { Id = id ?? Guid.NewGuid().ToString(), Name = name, Inputs = inputs, CliArgs = cliArgs, Env = env },
        new TaskLimits(null, null, null),
        MonitoringProfile.Standard);
}
