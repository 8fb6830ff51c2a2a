using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Fetching;
using Propeller.Edge.Tasks;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>
/// HTTP proxy components served by the proplet (spec §2.11, ADR 0015): a start with PROPLET_HTTP_ENABLED answers
/// "started at port N", a real HttpClient gets the component's answers on that port, a trap is a 500 that leaves the
/// listener serving, a busy port or an exhausted range is a clear error, and a stop frees the port.
/// </summary>
public sealed class HttpProxyServingTests : IAsyncDisposable
{
    private readonly InMemoryPublisher _published = new();
    private readonly PropletSettings _settings;
    private readonly InProcessRuntime _runtime;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly TaskRunner _runner;

    public HttpProxyServingTests()
    {
        _settings = TestSettings.Create("me") with { MaxConcurrentTasks = 1, HttpEnabled = true, HttpProxyPort = FreePort() };
        _runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance);
        var fetcher = new BinaryFetcher(_settings, new ChunkAssembler(_settings.MaxBinarySize, TimeProvider.System), _published, _http);
        _runner = new TaskRunner(_settings, _runtime, fetcher, _published, null, NullLogger<TaskRunner>.Instance);
    }

    public async ValueTask DisposeAsync()
    {
        await _runner.DisposeAsync();
        _runtime.Dispose();
        _http.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAProxyComponent_WhenStarted_ThenRealRequestsAreServedTrapsAre500AndAStopFreesThePort()
    {
        var port = FreePort();
        Start(new { id = "web", name = "proxy", file = Convert.ToBase64String(Components.Proxy), cli_args = new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture) } });

        var started = await NextResultAsync();
        started.GetProperty("task_id").GetString().ShouldBe("web");
        started.GetProperty("results").GetString().ShouldBe($"started at port {port}");
        started.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null);
        started.GetProperty("running").GetBoolean().ShouldBeTrue();
        var url = $"http://127.0.0.1:{port}";

        var hello = await _http.GetAsync(new Uri(url + "/"), Ct);
        hello.StatusCode.ShouldBe(HttpStatusCode.OK);
        hello.Content.Headers.ContentType!.MediaType.ShouldBe("text/plain");
        (await hello.Content.ReadAsStringAsync(Ct)).ShouldBe("hello, world");

        using var body = new StringContent("a body from a real client");
        var echo = await _http.PostAsync(new Uri(url + "/echo?q=1"), body, Ct);
        (await echo.Content.ReadAsStringAsync(Ct)).ShouldBe("/echo?q=1 a body from a real client");

        using var withHeader = new HttpRequestMessage(HttpMethod.Get, new Uri(url + "/header"));
        withHeader.Headers.Add("x-echo", "header value");
        (await (await _http.SendAsync(withHeader, Ct)).Content.ReadAsStringAsync(Ct)).ShouldBe("header value");
        (await _http.GetAsync(new Uri(url + "/teapot"), Ct)).StatusCode.ShouldBe((HttpStatusCode)418);

        // A trap, a missing response: 500 with the reason; the listener keeps serving.
        var trap = await _http.GetAsync(new Uri(url + "/trap"), Ct);
        trap.StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
        (await trap.Content.ReadAsStringAsync(Ct)).ShouldContain("unreachable");
        (await _http.GetAsync(new Uri(url + "/none"), Ct)).StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
        (await _http.GetStringAsync(new Uri(url + "/"), Ct)).ShouldBe("hello, world");

        // Concurrent requests, each on its own instance: every client gets its own body back.
        var answers = await Task.WhenAll(Enumerable.Range(0, 16).Select(async i =>
        {
            using var content = new StringContent($"client {i}");
            var answer = await _http.PostAsync(new Uri(url + $"/echo/{i}"), content, Ct);
            return await answer.Content.ReadAsStringAsync(Ct);
        }));
        answers.ShouldBe(Enumerable.Range(0, 16).Select(i => $"/echo/{i} client {i}").ToArray());

        // The proxy holds no concurrency slot (there is one): a normal task runs beside it.
        Start(new { id = "sum", name = "main", file = Modules.AdditionBase64, inputs = new[] { "40", "2" } });
        (await NextResultAsync()).GetProperty("results").GetString().ShouldBe("42");

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"web"}"""));
        await WaitUntilAsync(() => _runner.RunningCount == 0);
        await WaitUntilAsync(() => HttpProxyServer.Free(port));
        _published.TryNext(out _).ShouldBeFalse();
    }

    [Fact]
    public async Task GivenATimeout_WhenARequestSpins_ThenThatRequestIs500AtTheLimitAndTheProxyOutlivesIt()
    {
        var port = FreePort();
        Start(new { id = "spin", name = "proxy", file = Convert.ToBase64String(Components.Proxy), cli_args = new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--timeout", "0.3" } });
        (await NextResultAsync()).GetProperty("results").GetString().ShouldBe($"started at port {port}");
        var url = $"http://127.0.0.1:{port}";

        var spin = await _http.GetAsync(new Uri(url + "/spin"), Ct);
        spin.StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
        (await spin.Content.ReadAsStringAsync(Ct)).ShouldContain("exceeded the task's time limit of 0.3 s");

        // The task itself has no time limit: it still serves after more than 0.3 s.
        (await _http.GetStringAsync(new Uri(url + "/"), Ct)).ShouldBe("hello, world");
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"spin"}"""));
        await WaitUntilAsync(() => HttpProxyServer.Free(port));
    }

    /// <summary>A listen the system refuses for another reason than a port in use (an address not on this host here; a
    /// port below 1024 without the right to it elsewhere) is the bind error, not an exception out of the start (it was the
    /// task's internal error).</summary>
    [Fact]
    public async Task GivenAnAddressThatCannotBeBound_WhenTheProxyStarts_ThenItIsTheBindError()
    {
        var port = FreePort();

        var (server, error) = await HttpProxyServer.StartAsync(port, port, _ => Task.CompletedTask, Ct, IPAddress.Parse("192.0.2.1"));

        server.ShouldBeNull();
        error.ShouldStartWith($"Failed to bind HTTP proxy to port {port}: ");
    }

    /// <summary>
    /// The served app takes no configuration: no appsettings*.json of the working directory (whose watcher, one recursive
    /// inotify instance per served proxy, ran the user's 128 out) and no ASPNETCORE_* variables, which gave its Kestrel
    /// endpoints (Kestrel:Endpoints) the task never asked for. It serves on the port it was given.
    /// </summary>
    [Fact]
    public async Task GivenAServedProxy_WhenItListens_ThenItsAppHasNoConfigurationSourcesAndServesItsPort()
    {
        var port = FreePort();

        var (server, error) = await HttpProxyServer.StartAsync(port, port, context => context.Response.WriteAsync("hi", context.RequestAborted), Ct);

        error.ShouldBeNull();
        await using (server)
        {
            // In memory only (the empty builder's own: its content root): no file, no environment variables.
            Providers((IConfigurationRoot)server!.Configuration).ShouldAllBe(p => p is MemoryConfigurationProvider);
            using var http = new HttpClient();
            (await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/"), Ct)).ShouldBe("hi");
        }
    }

    /// <summary>A stop during a served proxy's compile (which nothing interrupts) is answered after the grace period, as a
    /// run's is, not when the compile ends; the task's guest thread, which its slot waits for, is the compile's until it
    /// returns.</summary>
    [Fact]
    public async Task GivenAProxyStillCompiling_WhenStopped_ThenTheStoppedOutcomeComesBeforeTheCompileEnds()
    {
        using var compiling = new ManualResetEventSlim();
        using var gate = new ManualResetEventSlim();
        using var runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance)
        {
            BeforeProxyLink = () =>
            {
                compiling.Set();
                gate.Wait(TimeSpan.FromSeconds(60), CancellationToken.None); // the test's token may be gone by then
            },
        };
        using var task = new RunningTask(new StartRequest(new StartMessage { Id = "compiling", Name = "proxy" }, new TaskLimits(null, null, null), MonitoringProfile.Standard));
        var serving = runtime.RunAsync(task, Components.Proxy, Ct);
        compiling.Wait(TimeSpan.FromSeconds(30), Ct).ShouldBeTrue();

        task.Abort(StopReason.Stopped);

        (await serving.WaitAsync(TimeSpan.FromSeconds(30), Ct)).Error.ShouldBe("Task compiling was stopped before completion");
        task.GuestReturned.IsCompleted.ShouldBeFalse("its slot waits for the compile");
        gate.Set();
        await task.GuestReturned.WaitAsync(TimeSpan.FromSeconds(30), Ct);
    }

    /// <summary>
    /// Requests are admitted (the bound's Running and Queued) before their bodies are read: with room for two, a third
    /// upload whose body has not come is answered 503 at once, while the two admitted ones wait for theirs. Before, every
    /// connection's body was read in full first (up to Kestrel's 30 MB each, connections unbounded), then the rest refused.
    /// </summary>
    [Fact]
    public async Task GivenUploadsWhoseBodiesHaveNotCome_WhenMoreArriveThanTheBound_ThenTheRestAre503AtOnce()
    {
        using var runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance) { HttpProxyBound = (1, 1) };
        var port = FreePort();
        using var task = new RunningTask(new StartRequest(
            new StartMessage { Id = "uploads", Name = "proxy", CliArgs = ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)] },
            new TaskLimits(null, null, null),
            MonitoringProfile.Standard));
        var serving = runtime.RunAsync(task, Components.Proxy, Ct);
        (await task.Started.WaitAsync(TimeSpan.FromSeconds(60), Ct)).ShouldBe($"started at port {port}");

        var uploads = new List<System.Net.Sockets.TcpClient>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var client = new System.Net.Sockets.TcpClient();
                uploads.Add(client);
                await client.ConnectAsync(IPAddress.Loopback, port, Ct);
                await client.GetStream().WriteAsync(Encoding.ASCII.GetBytes($"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\nfirst bytes"), Ct);
                await Task.Delay(200, Ct); // admitted in order
            }

            var buffer = new byte[256];
            var read = await uploads[2].GetStream().ReadAsync(buffer, Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(20), Ct);
            Encoding.ASCII.GetString(buffer, 0, read).ShouldStartWith("HTTP/1.1 503");
            uploads[0].GetStream().DataAvailable.ShouldBeFalse("the admitted uploads wait for their bodies");
        }
        finally
        {
            foreach (var client in uploads)
            {
                client.Dispose();
            }
        }

        task.Abort(StopReason.Stopped);
        (await serving.WaitAsync(TimeSpan.FromSeconds(60), Ct)).Error.ShouldBe("Task uploads was stopped before completion");
    }

    /// <summary>
    /// A served task's requests run their guests on guest threads, a bounded number at once: with one running and two
    /// waiting, a burst of eight spinning requests gets 503 with Retry-After for those beyond the bound, at once, while
    /// each admitted one ends at its time limit; the .NET pool meanwhile runs other work. On Kestrel's threads every
    /// request ran its guest at once, each holding a pool thread until its limit.
    /// </summary>
    [Fact]
    public async Task GivenABurstOfSpinningRequests_WhenMoreArriveThanTheBound_ThenTheRestAre503_AndThePoolStaysFree()
    {
        using var runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance) { HttpProxyBound = (1, 2) };
        var port = FreePort();
        using var task = new RunningTask(new StartRequest(
            new StartMessage { Id = "burst", Name = "proxy", CliArgs = ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)] },
            new TaskLimits(null, null, TimeSpan.FromSeconds(1)),
            MonitoringProfile.Standard));
        var serving = runtime.RunAsync(task, Components.Proxy, Ct);
        (await task.Started.WaitAsync(TimeSpan.FromSeconds(60), Ct)).ShouldBe($"started at port {port}");

        var burst = Enumerable.Range(0, 8).Select(_ => _http.GetAsync(new Uri($"http://127.0.0.1:{port}/spin"), Ct)).ToList();
        (await Task.Run(() => 42, Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct)).ShouldBe(42);
        var answers = await Task.WhenAll(burst);

        answers.ShouldAllBe(a => a.StatusCode == HttpStatusCode.ServiceUnavailable || a.StatusCode == HttpStatusCode.InternalServerError);
        var busy = answers.Where(a => a.StatusCode == HttpStatusCode.ServiceUnavailable).ToList();
        busy.ShouldNotBeEmpty("no request was refused: all eight ran at once");
        busy[0].Headers.RetryAfter.ShouldNotBeNull().Delta.ShouldBe(TimeSpan.FromSeconds(1));
        (await busy[0].Content.ReadAsStringAsync(Ct)).ShouldBe("HTTP proxy component is busy: too many requests at once\n");
        var spun = answers.First(a => a.StatusCode == HttpStatusCode.InternalServerError);
        (await spun.Content.ReadAsStringAsync(Ct)).ShouldContain("exceeded the task's time limit of 1 s");

        task.Abort(StopReason.Stopped);
        (await serving.WaitAsync(TimeSpan.FromSeconds(60), Ct)).Error.ShouldBe("Task burst was stopped before completion");
    }

    /// <summary>
    /// A request whose client goes away ends its guest: the request's end is linked to the client's abort, so a handler
    /// that never returns (no --timeout, no fuel limit) gives its slot back and the next client is served. It used to be
    /// linked to the task's stop only: with one slot and no queue, every later client got 503 until the task was stopped.
    /// </summary>
    [Fact]
    public async Task GivenASpinningRequestWithoutATimeout_WhenItsClientGoesAway_ThenItsSlotIsFreedForTheNextRequest()
    {
        using var runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance) { HttpProxyBound = (1, 0) };
        var port = FreePort();
        using var task = new RunningTask(new StartRequest(
            new StartMessage { Id = "left", Name = "proxy", CliArgs = ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)] },
            new TaskLimits(null, null, null),
            MonitoringProfile.Standard));
        var serving = runtime.RunAsync(task, Components.Proxy, Ct);
        (await task.Started.WaitAsync(TimeSpan.FromSeconds(60), Ct)).ShouldBe($"started at port {port}");
        var url = $"http://127.0.0.1:{port}";

        // The spinning request holds the only slot once a second one is refused while it runs (if the second got there
        // first, the spin was the one refused: it is sent again).
        using var leaving = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        Task<HttpResponseMessage> spin;
        var refused = false;
        var attempts = 0;
        do
        {
            spin = _http.GetAsync(new Uri(url + "/spin"), leaving.Token);
            while (!refused && !spin.IsCompleted && attempts++ < 400)
            {
                refused = (await _http.GetAsync(new Uri(url + "/"), Ct)).StatusCode == HttpStatusCode.ServiceUnavailable;
            }
        }
        while (!refused && attempts < 400);

        refused.ShouldBeTrue();
        spin.IsCompleted.ShouldBeFalse();
        await leaving.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(spin);

        HttpResponseMessage? served = null;
        for (var i = 0; i < 200 && served?.StatusCode != HttpStatusCode.OK; i++)
        {
            served = await _http.GetAsync(new Uri(url + "/"), Ct);
            if (served.StatusCode != HttpStatusCode.OK)
            {
                await Task.Delay(50, Ct);
            }
        }

        served.ShouldNotBeNull().StatusCode.ShouldBe(HttpStatusCode.OK);
        task.Abort(StopReason.Stopped);
        (await serving.WaitAsync(TimeSpan.FromSeconds(60), Ct)).Error.ShouldBe("Task left was stopped before completion");
    }

    /// <summary>
    /// A guest's list crosses into the host as one value per element (ADR 0015), and Wasmtime's hostcall fuel (128 MiB of
    /// those values per call) bounds it: a 16 MiB write in one call fails that request, whatever the guest's memory, and
    /// the proxy keeps serving. This pins the bound an upgrade of Wasmtime could change.
    /// </summary>
    [Fact]
    public async Task GivenAGuestWriting16MiBInOneCall_WhenServed_ThenWasmtimesHostcallFuelRefusesIt_AndTheProxyServesOn()
    {
        var port = FreePort();
        Start(new { id = "big", name = "proxy", file = Convert.ToBase64String(Components.Proxy), cli_args = new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture) } });
        (await NextResultAsync()).GetProperty("results").GetString().ShouldBe($"started at port {port}");

        var refused = await _http.GetAsync(new Uri($"http://127.0.0.1:{port}/big"), Ct);
        refused.StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
        (await refused.Content.ReadAsStringAsync(Ct)).ShouldContain("too much data is being copied between the host and the guest");
        (await _http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/"), Ct)).ShouldBe("hello, world");
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"big"}"""));
        await WaitUntilAsync(() => HttpProxyServer.Free(port));
    }

    [Fact]
    public async Task GivenNoPortInCliArgs_WhenStarted_ThenTheFirstFreePortOfTheRangeIsTaken()
    {
        using var busy = new TcpListener(IPAddress.Any, _settings.HttpProxyPort);
        busy.Start();
        Start(new { id = "ranged", name = "proxy", file = Convert.ToBase64String(Components.Proxy) });

        var results = (await NextResultAsync()).GetProperty("results").GetString().ShouldNotBeNull();
        results.ShouldStartWith("started at port ");
        var port = int.Parse(results["started at port ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        port.ShouldBeInRange(_settings.HttpProxyPort + 1, _settings.HttpProxyPort + 99);
        (await _http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/"), Ct)).ShouldBe("hello, world");
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"ranged"}"""));
        await WaitUntilAsync(() => HttpProxyServer.Free(port));
    }

    [Fact]
    public async Task GivenABusyPortOrAnExhaustedRange_WhenStarted_ThenTheErrorSaysSo()
    {
        using var busy = new TcpListener(IPAddress.Any, 0);
        busy.Start();
        var port = ((IPEndPoint)busy.LocalEndpoint).Port;
        var text = port.ToString(System.Globalization.CultureInfo.InvariantCulture);

        Start(new { id = "taken", name = "proxy", file = Convert.ToBase64String(Components.Proxy), cli_args = new[] { $"--addr=0.0.0.0:{text}" } });
        (await NextResultAsync()).GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith($"Failed to bind HTTP proxy to port {port}:");

        Start(new { id = "bad", name = "proxy", file = Convert.ToBase64String(Components.Proxy), cli_args = new[] { "--port", "http" } });
        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Invalid HTTP proxy port in cli_args: 'http'");

        // A range of one port (the last one), taken.
        using var runtime = new InProcessRuntime(_settings with { HttpProxyPort = 65_535 }, NullLogger<InProcessRuntime>.Instance);
        using var last = new TcpListener(IPAddress.Any, 65_535);
        try
        {
            last.Start();
        }
        catch (SocketException)
        {
            // someone else holds it: taken all the same
        }

        using var task = new RunningTask(new StartRequest(new StartMessage { Id = "full", Name = "" }, new TaskLimits(null, null, null), MonitoringProfile.Standard));
        (await runtime.RunAsync(task, Components.Proxy, Ct)).Error.ShouldBe("No available port found in range 65535-65535");
    }

    /// <summary>
    /// A proxy whose start-up (compiling, linking, binding) takes longer than its --timeout still starts and serves: the
    /// limit applies to each request, so the task's timer is not armed for it. The task timer was armed before the
    /// component was compiled, and on a loaded machine stopped the task before "started at port N" (a flaky test).
    /// </summary>
    [Fact]
    public async Task GivenASlowStartingProxyWithAShortTimeout_WhenStarted_ThenItStillStartsAndServes()
    {
        var fetcher = new BinaryFetcher(_settings, new ChunkAssembler(_settings.MaxBinarySize, TimeProvider.System), _published, _http);
        await using var runner = new TaskRunner(_settings, new SlowStart(_runtime, TimeSpan.FromSeconds(1)), fetcher, _published, null, NullLogger<TaskRunner>.Instance);
        var port = FreePort();

        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "slow", name = "proxy", file = Convert.ToBase64String(Components.Proxy), cli_args = new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--timeout", "0.3" } }));

        (await NextResultAsync()).GetProperty("results").GetString().ShouldBe($"started at port {port}");
        (await _http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/"), Ct)).ShouldBe("hello, world");
        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"slow"}"""));
        await WaitUntilAsync(() => HttpProxyServer.Free(port));
    }

    /// <summary>A runtime whose runs begin <paramref name="delay"/> late, as a compile on a loaded machine does.</summary>
    private sealed class SlowStart(InProcessRuntime inner, TimeSpan delay) : IWasmRuntime
    {
        public string Name => inner.Name;

        public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
        {
            await Task.Delay(delay, cancellationToken);
            return await inner.RunAsync(task, binary, cancellationToken);
        }

        public bool ServesHttpProxy(byte[] binary) => inner.ServesHttpProxy(binary);

        public LatentPreparation Prepare(RunningTask task, byte[] binary) => inner.Prepare(task, binary);

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => inner.InvokeAsync(invocation, prepared, cancellationToken);
    }

    private void Start(object message) => _runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(message));

    private async Task<JsonElement> NextResultAsync() =>
        await _published.NextAsync(Topics.Results, Ct).WaitAsync(TimeSpan.FromSeconds(60), Ct);

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 200 && !condition(); i++)
        {
            await Task.Delay(50, Ct);
        }

        condition().ShouldBeTrue();
    }

    private static IEnumerable<IConfigurationProvider> Providers(IConfigurationRoot root) =>
        root.Providers.SelectMany(p => p is ChainedConfigurationProvider { Configuration: IConfigurationRoot inner } ? Providers(inner) : [p]);

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
