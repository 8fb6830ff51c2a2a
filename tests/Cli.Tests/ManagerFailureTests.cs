using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Propeller.Tests.Shared;

namespace Propeller.Cli.Tests;

/// <summary>What the CLI does when the manager (a <see cref="FakeManager"/>) misbehaves, or its input is out of range.</summary>
public sealed partial class ManagerFailureTests : IDisposable
{
    private const string Id = FakeManager.TaskId;

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("cli-failure-tests");

    public void Dispose() => _dir.Delete(true);

    /// <summary>
    /// The task routes a wait uses: the task running now (and at any version), a history of <paramref name="version"/>
    /// events, the task completed once long-polled (after <paramref name="pollDelay"/>), and <paramref name="events"/>.
    /// </summary>
    private static FakeManager TaskRoutes(Func<HttpResponseMessage> events, long version = 2, TimeSpan pollDelay = default) => new(async (request, cancellationToken) =>
    {
        var path = request.RequestUri!.AbsolutePath;
        var query = request.RequestUri.Query;
        if (path == "/events")
        {
            return events();
        }

        if (path == $"/tasks/{Id}/history")
        {
            return FakeManager.Json("[" + string.Join(',', Enumerable.Range(1, (int)version).Select(v => $$"""{"version":{{v}},"type":"task.changed.v1"}""")) + "]");
        }

        if (path == $"/tasks/{Id}" && query.StartsWith("?wait=", StringComparison.Ordinal))
        {
            await Task.Delay(pollDelay, cancellationToken);
            return FakeManager.Json(FakeManager.Task(3));
        }

        return path == $"/tasks/{Id}" ? FakeManager.Json(FakeManager.Task(2)) : new HttpResponseMessage(HttpStatusCode.NotFound);
    });

    private static List<string> StateLines(string stdout) => [.. stdout.Split('\n').Select(l => StateLine().Match(l)).Where(m => m.Success).Select(m => m.Groups[1].Value)];

    [GeneratedRegex(@"^\+\d+\.\d+s  (.+)$")]
    private static partial Regex StateLine();

    /// <summary>A manager that does not page histories (before 2026-12-05) answers the whole history to every page's
    /// request: it is read once (the loop asked for the next page for ever).</summary>
    [Fact]
    public async Task History_FromAManagerThatDoesNotPage_IsReadOnce()
    {
        var manager = TaskRoutes(() => new HttpResponseMessage(HttpStatusCode.NotFound), version: 1500);

        var history = await Cli.RunAsync(manager, "task", "history", Id, "-o", "json");

        history.Exit.ShouldBe(0, history.ToString());
        history.Json.GetArrayLength().ShouldBe(1500);
        manager.Requests.Count(r => r.Contains("/history", StringComparison.Ordinal)).ShouldBe(1);
    }

    /// <summary>A watched task's event stream that breaks (the manager killed) ends like a closed one: by long polling.</summary>
    [Fact]
    public async Task Watch_WhenTheEventStreamBreaks_FinishesByLongPolling()
    {
        var manager = TaskRoutes(() => FakeManager.Events(FakeManager.Part(FakeManager.Hello), FakeManager.Cut));

        var watch = await Cli.RunAsync(manager, "task", "watch", Id);

        watch.Exit.ShouldBe(0, watch.ToString());
        watch.Out.Trim().Split('\n')[^1].ShouldBe("42");
        manager.Requests.ShouldContain($"GET {FakeManager.Url}/tasks/{Id}?wait=30s");
    }

    /// <summary>
    /// An id with characters a path cannot hold is no task id: refused before any request (task ids are GUIDs; such an
    /// id was escaped in every request, and "." and ".." could not be).
    /// </summary>
    [Fact]
    public async Task Watch_OfAnIdWithReservedCharacters_IsAUsageError_BeforeAnyRequest()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(3))));

        var watch = await Cli.RunAsync(manager, "task", "watch", "a b/c?d#e");

        watch.Exit.ShouldBe(2, watch.ToString());
        watch.Err.ShouldStartWith("propeller: the task id must be a task's id, such as 0193a5b0-7c2e-7000-8000-000000000001 (got 'a b/c?d#e')", Case.Sensitive, watch.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>A body that breaks while it is read is the manager not answering: one line and exit 3, not a stack trace.</summary>
    [Fact]
    public async Task AnErrorBody_ThatBreaks_IsOneLine_AndExit3()
    {
        var manager = new FakeManager((_, _) =>
        {
            var broken = FakeManager.Events(FakeManager.Part("{\"error\":"), FakeManager.Cut);
            broken.StatusCode = HttpStatusCode.BadGateway;
            return Task.FromResult(broken);
        });

        var watch = await Cli.RunAsync(manager, "task", "watch", Id);

        watch.Exit.ShouldBe(3, watch.ToString());
        watch.Err.Trim().ShouldStartWith($"propeller: the connection to the manager at {FakeManager.Url}/ broke");
        watch.Err.Trim().Split('\n').Length.ShouldBe(1);
    }

    /// <summary>An error answer to the event stream whose body stalls (a proxy's 5xx) is given up after --request-timeout:
    /// exit 3. Before, it was read without a limit and the watch waited until its own --timeout.</summary>
    [Fact(Timeout = 60_000)]
    public async Task AnErrorBody_ThatStalls_IsGivenUpAfterTheRequestTimeout_AndExit3()
    {
        var manager = new FakeManager((_, _) =>
        {
            var stalled = FakeManager.Events(FakeManager.Part("{\"error\":"), FakeManager.After(TimeSpan.FromHours(1), "\"late\"}"));
            stalled.StatusCode = HttpStatusCode.BadGateway;
            return Task.FromResult(stalled);
        });

        var watch = await Cli.RunAsync(manager, "task", "watch", Id, "--request-timeout", "1s", "--timeout", "1h");

        watch.Exit.ShouldBe(3, watch.ToString());
        watch.Err.Trim().ShouldStartWith($"propeller: the manager at {FakeManager.Url}/ did not answer GET /events?task={Id}");
    }

    /// <summary>
    /// Events buffered before the task was first read are older than what was shown: their versions are skipped, so the
    /// states never go backwards (running, then scheduled again).
    /// </summary>
    [Fact]
    public async Task Watch_SkipsEventsNotNewerThanTheTaskItShowed()
    {
        var manager = TaskRoutes(
            () => FakeManager.Events(FakeManager.Part(FakeManager.Hello + FakeManager.TaskEvent(2, 1) + FakeManager.TaskEvent(3, 2) + FakeManager.TaskEvent(5, 3))),
            version: 4);

        var watch = await Cli.RunAsync(manager, "task", "watch", Id);

        watch.Exit.ShouldBe(0, watch.ToString());
        StateLines(watch.Out).ShouldBe(["running on p1", "completed on p1"], watch.ToString());
    }

    /// <summary>A manager that accepts the connection and never answers is given up after --request-timeout: exit 3.</summary>
    [Fact(Timeout = 30_000)]
    public async Task AManagerThatNeverAnswers_IsGivenUpAfterTheRequestTimeout_AndExit3()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start(); // the kernel completes the handshakes: connected, and nobody reads the request
        try
        {
            var url = $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";
            var clock = Stopwatch.StartNew();

            var flag = await Cli.RunAsync(url, "task", "list", "--request-timeout", "1s");
            var env = await Cli.RunWithEnvironmentAsync(new Dictionary<string, string> { ["PROPELLER_URL"] = url, ["PROPELLER_REQUEST_TIMEOUT"] = "500ms" }, "proplet", "list");

            clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(15));
            flag.Exit.ShouldBe(3, flag.ToString());
            flag.Err.Trim().ShouldBe($"propeller: the manager at {url}/ did not answer GET /tasks?offset=0&limit=20 within 1s (set --request-timeout or PROPELLER_REQUEST_TIMEOUT)");
            env.Exit.ShouldBe(3, env.ToString());
            env.Err.ShouldContain("within 500ms");
        }
        finally
        {
            listener.Stop();
        }
    }

    /// <summary>
    /// A redirect is not followed but reported with where it points (exit 1): HttpClient followed it, turning a POST into
    /// a GET, and a redirect to an address that did not answer was "cannot reach the manager" (exit 3).
    /// </summary>
    [Fact(Timeout = 30_000)]
    public async Task ARedirect_IsReportedWithItsTarget_NotFollowed()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var requests = 0;
        var serving = AnswerWithARedirectAsync();
        try
        {
            var url = $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";

            var start = await Cli.RunAsync(url, "task", "start", Id);

            await serving;
            start.Exit.ShouldBe(1, start.ToString());
            start.Err.Trim().ShouldBe($"propeller: the manager at {url}/ answered POST /tasks/{Id}/start with a redirect (301) to http://127.0.0.1:1/api/tasks/{Id}/start: set --url or PROPELLER_URL to the manager's own address", start.ToString());
            requests.ShouldBe(1);
        }
        finally
        {
            listener.Stop();
        }

        async Task AnswerWithARedirectAsync()
        {
            using var client = await listener.AcceptTcpClientAsync(TestContext.Current.CancellationToken);
            var stream = client.GetStream();
            var buffer = new byte[8192];
            var read = 0;
            while (!Encoding.ASCII.GetString(buffer, 0, read).Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                read += await stream.ReadAsync(buffer.AsMemory(read), TestContext.Current.CancellationToken);
            }

            Interlocked.Increment(ref requests);
            var answer = $"HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:1/api/tasks/{Id}/start\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(answer), TestContext.Current.CancellationToken);
        }
    }

    /// <summary>The request timeout leaves long polls and the event stream alone: they wait longer than it by design.</summary>
    [Fact]
    public async Task LongPolls_AndTheEventStream_OutlastTheRequestTimeout()
    {
        var file = Path.Combine(_dir.FullName, "add.wasm");
        await File.WriteAllBytesAsync(file, Wasm.Addition, TestContext.Current.CancellationToken);
        var polled = new FakeManager(async (request, cancellationToken) =>
        {
            switch (request.RequestUri!.AbsolutePath)
            {
                case "/tasks":
                    return FakeManager.Json(FakeManager.Task(0));
                case var path when path.EndsWith("/start", StringComparison.Ordinal):
                    return FakeManager.Json(FakeManager.Task(1));
                default:
                    await Task.Delay(1500, cancellationToken); // the long poll answers when the task ends
                    return FakeManager.Json(FakeManager.Task(3));
            }
        });
        var streamed = TaskRoutes(() => FakeManager.Events(FakeManager.Part(FakeManager.Hello), FakeManager.After(TimeSpan.FromMilliseconds(1500), FakeManager.TaskEvent(3, 3))));

        var run = await Cli.RunAsync(polled, "--request-timeout", "1s", "task", "run", file);
        var watch = await Cli.RunAsync(streamed, "--request-timeout", "1s", "task", "watch", Id);

        run.Exit.ShouldBe(0, run.ToString());
        run.Out.Trim().ShouldBe("42");
        watch.Exit.ShouldBe(0, watch.ToString());
        watch.Out.Trim().Split('\n')[^1].ShouldBe("42");
        streamed.Requests.ShouldNotContain(r => r.Contains("wait=", StringComparison.Ordinal), "the stream was cut and the watch fell back to polling");
    }

    /// <summary>Durations beyond what a wait can be given are refused when parsed (exit 2), before anything is created.</summary>
    [Fact]
    public async Task AHugeTimeout_IsAUsageError_BeforeAnyRequest()
    {
        var manager = TaskRoutes(() => FakeManager.Events(FakeManager.Part(FakeManager.Hello)));

        var watch = await Cli.RunAsync(manager, "task", "watch", Id, "--timeout", "2000h");
        var request = await Cli.RunAsync(manager, "--request-timeout", "2000h", "task", "list");

        watch.Exit.ShouldBe(2, watch.ToString());
        watch.Err.ShouldContain("'2000h' is too long (at most 1000h)");
        request.Exit.ShouldBe(2, request.ToString());
        request.Err.ShouldContain("'2000h' is too long (at most 1000h)");
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>
    /// What the parser finds wrong is shown like every other error (docs/cli.md): lines on stderr starting with
    /// "propeller: ", a typo's suggestions on its line, and where the help is instead of the whole help; exit 2.
    /// </summary>
    [Theory]
    [InlineData("task list --limit 101", "propeller: --limit must be between 1 and 100\npropeller: see 'propeller task list --help'")]
    [InlineData("task watch 0193a5b0-7c2e-7000-8000-000000000001 --timeout 2000h", "propeller: '2000h' is too long (at most 1000h)\npropeller: see 'propeller task watch --help'")]
    [InlineData("task list --bogus", "propeller: Unrecognized command or argument '--bogus'.\npropeller: see 'propeller task list --help'")]
    [InlineData(
        "task lst",
        "propeller: Required command was not provided.\npropeller: Unrecognized command or argument 'lst'.\n"
        + "propeller: 'lst' was not matched. Did you mean one of the following? list\npropeller: see 'propeller task --help'")]
    public async Task AUsageError_IsPrefixedLinesOnStderr_WithAHelpHint_AndExit2(string args, string stderr)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("{}")));

        var outcome = await Cli.RunAsync(manager, args.Split(' '));

        outcome.Exit.ShouldBe(2, outcome.ToString());
        outcome.Out.ShouldBeEmpty(outcome.ToString());
        outcome.Err.ReplaceLineEndings("\n").TrimEnd().ShouldBe(stderr, outcome.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>A user that cannot be an HTTP header (not ASCII, or a newline) is a usage error, not an unreachable manager.</summary>
    [Fact]
    public async Task AUserThatCannotBeAHeader_IsAUsageError()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("""{"offset":0,"limit":20,"total":0,"tasks":[]}""")));

        var accent = await Cli.RunAsync(manager, "--user", "zoë", "task", "list");
        var newline = await Cli.RunWithEnvironmentAsync(new Dictionary<string, string> { ["PROPELLER_URL"] = FakeManager.Url, ["PROPELLER_USER"] = "alice\nX-Evil: 1" }, "task", "list");

        accent.Exit.ShouldBe(2, accent.ToString());
        accent.Err.Trim().ShouldBe("propeller: --user (PROPELLER_USER) must be printable ASCII: it is sent as the X-User-Id header");
        newline.Exit.ShouldBe(2, newline.ToString());
        newline.Err.Trim().ShouldBe("propeller: --user (PROPELLER_USER) must be printable ASCII: it is sent as the X-User-Id header");
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>A base URL with a path (a manager behind a gateway's prefix) keeps it in every request.</summary>
    [Theory]
    [InlineData(FakeManager.Url + "/propeller")]
    [InlineData(FakeManager.Url + "/propeller/")]
    public async Task AUrlWithAPath_IsKept(string url)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(2))));

        var get = await Cli.RunAsync(manager, "--url", url, "task", "get", Id);

        get.Exit.ShouldBe(0, get.ToString());
        manager.Requests.ToArray().ShouldBe([$"GET {FakeManager.Url}/propeller/tasks/{Id}"], get.ToString());
    }

    /// <summary>A reload that kept a plugin at its previous version (its new file failed to load) says so, with why.</summary>
    [Fact]
    public async Task PluginReload_WithAPluginKept_SaysItRunsItsPreviousVersion()
    {
        const string Body = """
            {"plugins":[],"skipped":[],"directory":"/plugins",
             "kept":[{"name":"auth","file":"auth.wasm","error":"truncated\nmodule","sha256":"0123456789abcdef0123"}]}
            """;
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(Body)));

        var reload = await Cli.RunAsync(manager, "plugin", "reload");

        reload.Exit.ShouldBe(0, reload.ToString());
        reload.Out.ShouldContain("kept auth at its previous version (sha256 0123456789ab): auth.wasm: truncated module");
    }

    /// <summary>A 2xx answer of an unexpected shape is one line and exit 1, whatever the command.</summary>
    [Theory]
    [InlineData("{}", "task", "list")]
    [InlineData("[]", "task", "list")]
    [InlineData("{}", "proplet", "list")]
    [InlineData("{}", "proplet", "get", "p1")]
    [InlineData("{}", "plugin", "list")]
    [InlineData("{\"plugins\":[{\"name\":\"x\"}],\"skipped\":[]}", "plugin", "reload")]
    [InlineData("{\"proplets\":[],\"total\":\"many\"}", "proplet", "list")]
    [InlineData("{\"tasks\":[]}", "task", "list")]
    [InlineData("{\"proplets\":[]}", "proplet", "list")]
    [InlineData("{\"metadata\":{}}", "proplet", "get", "p1")]
    [InlineData("{\"plugins\":[],\"directory\":\"/plugins\"}", "plugin", "list")]
    public async Task AnAnswerOfAnUnexpectedShape_IsOneLine_AndExit1_WithNothingPrintedBeforeIt(string body, params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(body)));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(1, outcome.ToString());
        outcome.Out.ShouldBeEmpty(outcome.ToString());
        outcome.Err.Trim().ShouldStartWith($"propeller: unexpected answer from the manager at {FakeManager.Url}/: ");
        outcome.Err.Trim().Split('\n').Length.ShouldBe(1, outcome.ToString());
    }

    /// <summary>`task run` whose create answers without an id stops there, with one line and exit 1.</summary>
    [Fact]
    public async Task Run_WhenTheCreateAnswersWithoutAnId_IsOneLine_AndExit1()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("{}")));
        var file = Path.Combine(_dir.FullName, "add.wasm");
        await File.WriteAllBytesAsync(file, Wasm.Addition, TestContext.Current.CancellationToken);

        var run = await Cli.RunAsync(manager, "task", "run", file);

        run.Exit.ShouldBe(1, run.ToString());
        run.Err.Trim().ShouldStartWith("propeller: unexpected answer from the manager");
        manager.Requests.ShouldBe([$"POST {FakeManager.Url}/tasks"]);
    }

    /// <summary>`task run --image-url` without a file creates the task from the image alone (the proplet asks the proxy for it).</summary>
    [Fact]
    public async Task Run_WithAnImageUrlAndNoFile_CreatesTheTaskFromTheImage()
    {
        var created = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var manager = new FakeManager(async (request, cancellationToken) =>
        {
            switch (request.RequestUri!.AbsolutePath)
            {
                case "/tasks":
                    created.Enqueue(await request.Content!.ReadAsStringAsync(cancellationToken));
                    return FakeManager.Json(FakeManager.Task(0));
                case var path when path.EndsWith("/start", StringComparison.Ordinal):
                    return FakeManager.Json(FakeManager.Task(1));
                default:
                    return FakeManager.Json(FakeManager.Task(3));
            }
        });

        var run = await Cli.RunAsync(manager, "task", "run", "--image-url", "127.0.0.1:55000/x/add:v1", "-i", "1,2");

        run.Exit.ShouldBe(0, run.ToString());
        run.Out.Trim().ShouldBe("42");
        var body = JsonDocument.Parse(created.Single()).RootElement;
        body.GetProperty("image_url").GetString().ShouldBe("127.0.0.1:55000/x/add:v1");
        (body.TryGetProperty("file", out var file) ? file.ValueKind : JsonValueKind.Null).ShouldBe(JsonValueKind.Null, created.Single());
    }

    /// <summary>
    /// A task's module comes from a file or an image URL: both (the proplet would run the file, never asking for the
    /// image) or, for `task run`, neither is a usage error before any request.
    /// </summary>
    [Theory]
    [InlineData("propeller: FILE.wasm and --image-url cannot be used together: the module comes from one of them", "task", "run", "add.wasm", "--image-url", "reg/x/add:v1")]
    [InlineData("propeller: task run needs FILE.wasm or --image-url URL", "task", "run", "-i", "1,2")]
    [InlineData("propeller: --file and --image-url cannot be used together: the module comes from one of them", "task", "create", "-n", "main", "--file", "add.wasm", "--image-url", "reg/x/add:v1")]
    public async Task TheModule_FromBothAFileAndAnImageUrl_OrNeitherForRun_IsAUsageError(string stderr, params string[] args)
    {
        await File.WriteAllBytesAsync(Path.Combine(_dir.FullName, "add.wasm"), Wasm.Addition, TestContext.Current.CancellationToken);
        // Answers as if the task were created and already completed: a command that wrongly goes on ends at once.
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(3))));

        var outcome = await Cli.RunAsync(manager, [.. args.Select(a => a == "add.wasm" ? Path.Combine(_dir.FullName, a) : a)]);

        outcome.Exit.ShouldBe(2, outcome.ToString());
        outcome.Err.Trim().Split('\n')[0].ShouldBe(stderr, outcome.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>Pages the manager would refuse (task limit 1-100, offsets and proplet limits below 0 or 1) are usage errors.</summary>
    [Theory]
    [InlineData("task", "--limit", "0", "--limit must be between 1 and 100")]
    [InlineData("task", "--limit", "101", "--limit must be between 1 and 100")]
    [InlineData("task", "--limit", "-1", "--limit must be between 1 and 100")]
    [InlineData("task", "--offset", "-1", "--offset must be 0 or more")]
    [InlineData("proplet", "--limit", "0", "--limit must be 1 or more")]
    [InlineData("proplet", "--offset", "-1", "--offset must be 0 or more")]
    public async Task List_WithAPageOutOfRange_IsAUsageError(string noun, string option, string value, string message)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("""{"offset":0,"limit":20,"total":0,"tasks":[],"proplets":[]}""")));

        var list = await Cli.RunAsync(manager, noun, "list", option, value);

        list.Exit.ShouldBe(2, list.ToString());
        list.Err.ShouldContain(message);
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>`proplet get` shows the latest CPU sample to one decimal and memory in MiB, not every digit sent.</summary>
    [Fact]
    public async Task PropletGet_ShowsCpuToOneDecimal_AndMemoryInMiB()
    {
        var manager = new FakeManager((request, _) => Task.FromResult(FakeManager.Json(request.RequestUri!.AbsolutePath switch
        {
            "/proplets/p1" => """{"id":"p1","name":"one","alive":true,"task_count":0,"metadata":{}}""",
            "/proplets/p1/metrics" => """{"metrics":[{"cpu_metrics":{"percent":84.32910949453866},"memory_metrics":{"rss_bytes":52953088}}]}""",
            _ => """{"offset":0,"limit":100,"total":0,"tasks":[]}""",
        })));

        var get = await Cli.RunAsync(manager, "proplet", "get", "p1");

        get.Exit.ShouldBe(0, get.ToString());
        get.Out.ShouldContain("84.3%", Case.Sensitive, get.ToString());
        get.Out.ShouldNotContain("84.32", Case.Sensitive, get.ToString());
        get.Out.ShouldContain("50.5 MiB rss", Case.Sensitive, get.ToString());
    }

    /// <summary>`proplet list --offset` pages through the proplets and says which of how many it shows.</summary>
    [Fact]
    public async Task PropletList_WithAnOffset_AsksForThatPage_AndSaysWhichItShows()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(
            """{"offset":5,"limit":2,"total":6,"proplets":[{"id":"p6","name":"six","alive":true,"task_count":0}]}""")));

        var list = await Cli.RunAsync(manager, "proplet", "list", "--offset", "5", "--limit", "2");

        list.Exit.ShouldBe(0, list.ToString());
        manager.Requests.ShouldBe([$"GET {FakeManager.Url}/proplets?offset=5&limit=2"]);
        list.Out.ShouldContain("p6");
        list.Out.Trim().Split('\n')[^1].ShouldBe("6-6 of 6 proplets");
    }

    /// <summary>
    /// A number option given something that is not a whole number in its type's range is a usage error (exit 2); the
    /// range check read the value the parser could not convert, and the CLI crashed with a stack trace (exit 134).
    /// </summary>
    [Theory]
    [InlineData("propeller: --limit must be a whole number between 1 and 100, got 'abc'", "task", "list", "--limit", "abc")]
    [InlineData("propeller: --offset must be a whole number, 0 or more, got '99999999999999999999'", "task", "list", "--offset", "99999999999999999999")]
    [InlineData("propeller: --limit must be a whole number, 1 or more, got '1.5'", "proplet", "list", "--limit", "1.5")]
    [InlineData("propeller: --last must be a whole number between 1 and 1000, got 'ten'", "task", "history", Id, "--last", "ten")]
    public async Task ANumberOptionThatIsNotANumber_IsAUsageError(string stderr, params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("""{"offset":0,"limit":20,"total":0,"tasks":[],"proplets":[]}""")));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(2, outcome.ToString());
        outcome.Err.Trim().Split('\n')[0].ShouldBe(stderr, outcome.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>
    /// An empty file name (<c>""</c>, an unset shell variable) is a usage error; the check that a module comes from one
    /// place read the file the parser could not make of it, and the CLI crashed with a stack trace (exit 134).
    /// </summary>
    [Theory]
    [InlineData("task", "run", "")]
    [InlineData("task", "create", "-n", "main", "--file", "")]
    public async Task AnEmptyFileName_IsAUsageError(params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(3))));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(2, outcome.ToString());
        outcome.Err.ShouldStartWith("propeller: ", Case.Sensitive, outcome.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>
    /// An empty id is a usage error: GET /tasks/ is the task list, which `task get ""` showed as a task (state ?, exit
    /// 0); the other commands got the manager's 404 or 405 for a path the user never typed.
    /// </summary>
    [Theory]
    [InlineData("propeller: the task id must not be empty", "task", "get", "")]
    [InlineData("propeller: the task id must not be empty", "task", "start", "")]
    [InlineData("propeller: the task id must not be empty", "task", "delete", "")]
    [InlineData("propeller: the task id must not be empty", "task", "watch", "")]
    [InlineData("propeller: the proplet id must not be empty", "proplet", "get", "")]
    public async Task AnEmptyId_IsAUsageError(string stderr, params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("""{"offset":0,"limit":100,"total":1,"tasks":[{"id":"x"}]}""")));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(2, outcome.ToString());
        outcome.Err.Trim().Split('\n')[0].ShouldBe(stderr, outcome.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>
    /// An empty --image-url is a usage error: it counted as the module's source, so `task run --image-url ""` created a
    /// task without a module and waited for it until --timeout (10 minutes).
    /// </summary>
    [Theory]
    [InlineData("task", "run", "--image-url", "", "--timeout", "2s")]
    [InlineData("task", "create", "-n", "main", "--image-url", "")]
    public async Task AnEmptyImageUrl_IsAUsageError(params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(0))));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(2, outcome.ToString());
        outcome.Err.Trim().Split('\n')[0].ShouldBe("propeller: --image-url must not be empty", outcome.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>
    /// A 200 with an empty body where the CLI expects JSON (not the manager: a proxy's placeholder, another server) is
    /// one clear line and exit 1; it was "Operation is not valid due to the current state of the object", and `task
    /// start` reported the task started.
    /// </summary>
    [Theory]
    [InlineData("GET /tasks/" + Id, "task", "get", Id)]
    [InlineData("POST /tasks/" + Id + "/start", "task", "start", Id)]
    [InlineData("GET /plugins", "plugin", "list")]
    public async Task AnEmptyAnswer_IsOneClearLine_AndExit1(string request, params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK)));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(1, outcome.ToString());
        outcome.Out.ShouldBeEmpty(outcome.ToString());
        outcome.Err.Trim().ShouldBe($"propeller: the manager at {FakeManager.Url}/ answered {request} with an empty body", outcome.ToString());
    }

    /// <summary>A delete's answer is not read: an empty 200 (a proxy that rewrites the manager's 204) deletes as a 204 does.</summary>
    [Fact]
    public async Task ADeleteAnsweredWithAnEmpty200_IsDone()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK)));

        var outcome = await Cli.RunAsync(manager, "task", "delete", Id);

        outcome.Exit.ShouldBe(0, outcome.ToString());
        outcome.Err.ShouldBeEmpty(outcome.ToString());
    }

    /// <summary>
    /// An answer that does not end (a stream mistaken for the manager) is given up at 256 MiB, one line and exit 1; it
    /// was read into 2 GiB of memory, then reported as "cannot reach the manager" (exit 3).
    /// </summary>
    [Fact]
    public async Task AnAnswerThatDoesNotEnd_IsGivenUpAt256MiB_AndExit1()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new EndlessStream()) }));

        var outcome = await Cli.RunAsync(manager, "task", "list");

        outcome.Exit.ShouldBe(1, outcome.ToString());
        outcome.Err.Trim().ShouldBe($"propeller: the manager at {FakeManager.Url}/ answered GET /tasks?offset=0&limit=20 with more than 256 MiB: not an answer of the manager's", outcome.ToString());
    }

    /// <summary>
    /// A long poll answered at once with something that is no task (another server at the URL) is an unexpected answer,
    /// exit 1; the wait asked again without pause, thousands of requests a second, until --timeout (10 minutes).
    /// </summary>
    [Fact(Timeout = 30_000)]
    public async Task Run_WhenTheWaitAnswersNoTask_IsAnUnexpectedAnswer_NotAFloodOfPolls()
    {
        var manager = new FakeManager((request, _) => Task.FromResult(FakeManager.Json(request.RequestUri!.Query.StartsWith("?wait=", StringComparison.Ordinal)
            ? """{"offset":0,"limit":20,"total":0,"tasks":[]}"""
            : FakeManager.Task(0))));

        var run = await Cli.RunAsync(manager, "task", "run", "--image-url", "reg/x/add:v1", "--timeout", "5s");

        run.Exit.ShouldBe(1, run.ToString());
        run.Err.Trim().ShouldStartWith($"propeller: unexpected answer from the manager at {FakeManager.Url}/: ", Case.Sensitive, run.ToString());
        manager.Requests.Count(r => r.Contains("?wait=", StringComparison.Ordinal)).ShouldBe(1);
    }

    /// <summary>`task list --metadata` that is not a JSON object is a usage error, as for `task create` (it was the manager's 400, exit 1).</summary>
    [Theory]
    [InlineData("{bad", "propeller: --metadata is not JSON: ")]
    [InlineData("[1]", "propeller: --metadata must be a JSON object")]
    public async Task List_WithMetadataThatIsNotAJsonObject_IsAUsageError(string metadata, string stderr)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.BadRequest) { Content = new StringContent("""{"error":"metadata must be a JSON object"}""") }));

        var list = await Cli.RunAsync(manager, "task", "list", "--metadata", metadata);

        list.Exit.ShouldBe(2, list.ToString());
        list.Err.ShouldStartWith(stderr, Case.Sensitive, list.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>`--inputs` with an empty value (a doubled or trailing comma, or only commas) is a usage error; it sent
    /// empty strings, which no function's parameter takes.</summary>
    [Theory]
    [InlineData(",,,")]
    [InlineData("10,,32")]
    [InlineData("10,")]
    [InlineData("10, ,32")]
    public async Task Create_WithAnEmptyInput_IsAUsageError(string inputs)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(0))));

        var create = await Cli.RunAsync(manager, "task", "create", "--name", "add", "-i", inputs);

        create.Exit.ShouldBe(2, create.ToString());
        create.Err.ShouldStartWith($"propeller: --inputs has an empty value in '{inputs}'", Case.Sensitive, create.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>
    /// A module whose base64 passes the manager's 100 MiB request limit is a usage error before any request; it was sent,
    /// and the manager's 413 (closing the connection mid-body) read as "cannot reach the manager" (exit 3).
    /// </summary>
    [Fact]
    public async Task AModuleOverTheManagersRequestLimit_IsAUsageError_BeforeAnyRequest()
    {
        var file = Path.Combine(_dir.FullName, "big.wasm");
        await using (var stream = File.Create(file))
        {
            await stream.WriteAsync(Wasm.Addition, TestContext.Current.CancellationToken);
            stream.SetLength(76L * 1024 * 1024); // sparse: 76 MiB is 101.3 MiB of base64
        }

        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(3))));

        var run = await Cli.RunAsync(manager, "task", "run", file);

        run.Exit.ShouldBe(2, run.ToString());
        run.Err.Trim().ShouldBe($"propeller: {file} is too large: 76 MiB, as base64 over the manager's request limit of 100 MiB (a module of at most 75 MiB fits)", run.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>A module of FB EF BE bytes repeated: its base64 is all '+', which JSON's default encoder writes as \u002B.</summary>
    private string PlusModule(long length)
    {
        var bytes = new byte[length];
        for (var i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (i % 3) switch { 0 => 0xFB, 1 => 0xEF, _ => 0xBE };
        }

        Wasm.Addition.AsSpan(0, 8).CopyTo(bytes);
        var file = Path.Combine(_dir.FullName, "plus.wasm");
        File.WriteAllBytes(file, bytes);
        return file;
    }

    /// <summary>A manager that refuses a body over its limit (413) as the real one does, else creates the task.</summary>
    private static FakeManager SizeLimitedManager(List<long> bodies) => new(async (request, cancellationToken) =>
    {
        var body = new SlowStream(TimeSpan.Zero);
        if (request.Content is not null)
        {
            await request.Content.CopyToAsync(body, cancellationToken);
        }

        var length = body.Written;
        lock (bodies)
        {
            bodies.Add(length);
        }

        return length > 100L * 1024 * 1024
            ? new HttpResponseMessage(HttpStatusCode.RequestEntityTooLarge) { Content = new StringContent("""{"error":"request body too large"}""") }
            : FakeManager.Json(FakeManager.Task(0));
    });

    /// <summary>
    /// A module whose base64 (all '+') is just under the limit is sent in a body under the limit: with the default
    /// encoder each '+' took 6 bytes, the body was 600 MiB and the manager's 413 read as "cannot reach the manager".
    /// </summary>
    [Fact]
    public async Task AModuleOfPlusSignsWithinTheLimit_IsSentInABodyWithinTheLimit()
    {
        var file = PlusModule((100L * 1024 * 1024 / 4 * 3) - 3072);
        var bodies = new List<long>();
        var manager = SizeLimitedManager(bodies);

        var create = await Cli.RunAsync(manager, "task", "create", "-n", "main", "--file", file);

        create.Exit.ShouldBe(0, create.ToString());
        bodies.ShouldHaveSingleItem().ShouldBeLessThanOrEqualTo(100L * 1024 * 1024);
    }

    /// <summary>One whose base64 alone fits but whose whole body does not is a usage error before any request.</summary>
    [Fact]
    public async Task AModuleOfPlusSignsWhoseBodyIsOverTheLimit_IsAUsageError_BeforeAnyRequest()
    {
        var file = PlusModule(100L * 1024 * 1024 / 4 * 3);
        var manager = SizeLimitedManager([]);

        var create = await Cli.RunAsync(manager, "task", "create", "-n", "main", "--file", file);

        create.Exit.ShouldBe(2, create.ToString());
        create.Err.ShouldStartWith("propeller: request too large: the body of POST /tasks is 100 MiB, over the manager's request limit of 100 MiB", Case.Sensitive, create.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>The manager's 413 is a usage error that says so (exit 2), not a failure of the manager.</summary>
    [Fact]
    public async Task TheManagersRequestTooLarge_IsAUsageErrorThatSaysSo()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.RequestEntityTooLarge) { Content = new StringContent("") }));

        var create = await Cli.RunAsync(manager, "task", "create", "-n", "main", "--file", PlusModule(4096));

        create.Exit.ShouldBe(2, create.ToString());
        create.Err.ShouldStartWith("propeller: request too large: the manager at http://manager.fake/ refused the body of POST /tasks (413", Case.Sensitive, create.ToString());
    }

    /// <summary>
    /// Sending the body does not count against --request-timeout: a manager that reads a body slowly (longer in all than
    /// the timeout, each part well within it) gets it, and the command succeeds; it timed out mid-upload (exit 3).
    /// </summary>
    [Fact]
    public async Task ASlowUpload_IsNotCountedAgainstTheRequestTimeout()
    {
        var manager = new FakeManager(async (request, cancellationToken) =>
        {
            await request.Content!.CopyToAsync(new SlowStream(TimeSpan.FromMilliseconds(250)), cancellationToken);
            return FakeManager.Json(FakeManager.Task(0));
        });

        var create = await Cli.RunAsync(manager, "task", "create", "-n", "main", "--file", PlusModule(12 * 48 * 1024), "--request-timeout", "2s");

        create.Exit.ShouldBe(0, create.ToString());
    }

    /// <summary>An error's text from the manager is printed on one line, its control characters (ESC) shown escaped.</summary>
    [Theory]
    [InlineData("task", "get")]
    [InlineData("proplet", "get")]
    public async Task AManagersErrorText_IsPrintedOnOneLineWithoutControlCharacters(string noun, string verb)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.BadRequest)
        {
            Content = new StringContent("{\"error\":\"a\\nb\\u001b[31m\\r\\nc\"}", Encoding.UTF8, "application/json"),
        }));

        var get = await Cli.RunAsync(manager, noun, verb, noun == "task" ? Id : "p1");

        get.Exit.ShouldBe(1, get.ToString());
        get.Err.TrimEnd('\n').ShouldNotContain('\n');
        get.Err.ShouldNotContain('\u001b');
        get.Err.ShouldEndWith(": a b\\u001b[31m c\n", Case.Sensitive, get.ToString());
    }

    /// <summary>A task's error (a guest's or a plugin's text) is shown on one line in its table and in run's last line.</summary>
    [Fact]
    public async Task ATasksErrorText_IsShownOnOneLineWithoutControlCharacters()
    {
        const string failed = $$"""{"id":"{{Id}}","name":"main","state":4,"error":"trap\nat \u001b]0;title\u0007 x"}""";
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(failed)));

        var get = await Cli.RunAsync(manager, "task", "get", Id);

        get.Exit.ShouldBe(0, get.ToString());
        get.Out.ShouldNotContain('\u001b');
        get.Out.ShouldNotContain('\u0007');
        get.Out.ShouldContain("trap at \\u001b]0;title\\u0007 x");
    }

    /// <summary>
    /// Names, ids, image URLs, a proplet's metadata and a plugin's reasons come from users, edge devices and plugins:
    /// every table cell is made printable, as an error is; they reached the terminal with their ESC and BEL.
    /// </summary>
    [Theory]
    [InlineData("""{"offset":0,"limit":20,"total":1,"tasks":[{"id":"t\u001b[2J","name":"evil\u001b]0;title\u0007","state":2,"proplet_id":"p\u001b[31m"}]}""", "task", "list")]
    [InlineData("""{"id":"t","name":"evil\u001b]0;title\u0007","state":0,"kind":"k\u001b","image_url":"reg/\u001b[31m"}""", "task", "get", Id)]
    [InlineData("""{"offset":0,"limit":100,"total":1,"proplets":[{"id":"p\u001b[2J","name":"evil\u001b]0;title\u0007","alive":true,"task_count":0}]}""", "proplet", "list")]
    [InlineData("""{"id":"p\u001b[2J","name":"evil\u001b]0;title\u0007","alive":true,"task_count":0,"metadata":{"hostname":"h\u001b[31m","os":"\u0007"},"metrics":[],"tasks":[]}""", "proplet", "get", "p1")]
    [InlineData("""[{"version":1,"type":"task.created.v1","user_id":"u\u001b","headers":{"plugins":"[{\"plugin\":\"a\",\"hook\":\"authorize\",\"allow\":false,\"reason\":\"evil\\u001b]0;title\\u0007\"}]"}}]""", "task", "history", Id)]
    [InlineData("""{"plugins":[{"order":1,"name":"evil\u001b]0;title\u0007","version":"1","active":true,"hooks":[],"counters":{}}],"skipped":[{"file":"f\u001b.wasm","error":"e"}],"directory":"/d\u0007"}""", "plugin", "list")]
    public async Task TextFromTheManager_ReachesTheTerminalWithoutControlCharacters(string body, params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(body)));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(0, outcome.ToString());
        outcome.Out.ShouldNotContain('\u001b', outcome.ToString());
        outcome.Out.ShouldNotContain('\u0007', outcome.ToString());
        outcome.Out.ShouldContain("\\u001b", Case.Sensitive, outcome.ToString());
    }

    /// <summary>A watch's state lines and its last line name the proplet (an edge device's id): made printable too.</summary>
    [Fact]
    public async Task AWatchsLines_AreShownWithoutControlCharacters()
    {
        const string Evil = "p\\u001b]0;title\\u0007";
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => FakeManager.Events(FakeManager.Part(FakeManager.Hello)),
            $"/tasks/{Id}/history" => FakeManager.Json("[]"),
            _ => FakeManager.Json(FakeManager.Task(request.RequestUri.Query.StartsWith("?wait=", StringComparison.Ordinal) ? 3 : 2, Evil)),
        }));

        var watch = await Cli.RunAsync(manager, "task", "watch", Id);

        watch.Exit.ShouldBe(0, watch.ToString());
        StateLines(watch.Out).ShouldBe(["running on p\\u001b]0;title\\u0007", "completed on p\\u001b]0;title\\u0007"], watch.ToString());
        (watch.Out + watch.Err).ShouldNotContain('\u001b', watch.ToString());
        (watch.Out + watch.Err).ShouldNotContain('\u0007', watch.ToString());
    }

    /// <summary>
    /// An InvalidOperationException that does not come from reading an answer (here the HTTP handler's) is not reported
    /// as "unexpected answer from the manager": that sent the reader looking at the manager for a fault of the CLI's.
    /// </summary>
    [Fact]
    public async Task AnInvalidOperationNotFromReadingAnAnswer_IsNotBlamedOnTheManager()
    {
        var manager = new FakeManager((_, _) => throw new InvalidOperationException("a fault of the client's"));

        var list = await Cli.RunAsync(manager, "task", "list");

        list.Exit.ShouldNotBe(0, list.ToString());
        list.Err.ShouldNotContain("unexpected answer from the manager", Case.Sensitive, list.ToString());
        list.Err.ShouldContain("a fault of the client's", Case.Sensitive, list.ToString());
    }

    /// <summary>"." and ".." are no ids: they were resolved away as path segments (GET /tasks/, the list, shown as a task).</summary>
    [Theory]
    [InlineData("task", ".")]
    [InlineData("task", "..")]
    [InlineData("task", "not-a-guid")]
    [InlineData("proplet", ".")]
    [InlineData("proplet", "..")]
    public async Task ADotSegmentOrANonGuidTaskId_IsAUsageError_BeforeAnyRequest(string noun, string id)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("""{"offset":0,"limit":100,"total":0,"tasks":[],"proplets":[]}""")));

        var get = await Cli.RunAsync(manager, noun, "get", id);

        get.Exit.ShouldBe(2, get.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>Each task command takes a task id only.</summary>
    [Theory]
    [InlineData("start")]
    [InlineData("stop")]
    [InlineData("delete")]
    [InlineData("history")]
    public async Task EveryTaskCommand_RefusesADotSegmentId(string verb)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("{}")));

        var run = await Cli.RunAsync(manager, "task", verb, "..");

        run.Exit.ShouldBe(2, run.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>--version and --at together, or a version below 1, is a usage error before any request.</summary>
    [Theory]
    [InlineData("--version", "2", "--at", "2026-01-01T00:00:00Z")]
    [InlineData("--version", "0")]
    [InlineData("--version", "-1")]
    [InlineData("--version", "x")]
    public async Task GetWithConflictingOrNonPositiveReplayOptions_IsAUsageError_BeforeAnyRequest(params string[] options)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(FakeManager.Task(0))));

        var get = await Cli.RunAsync(manager, ["task", "get", Id, .. options]);

        get.Exit.ShouldBe(2, get.ToString());
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>A stream that counts what is written, taking <paramref name="delay"/> per 64 KiB: a manager reading a body (over a slow link).</summary>
    private sealed class SlowStream(TimeSpan delay) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("written asynchronously");

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public long Written { get; private set; }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Delay(delay * buffer.Length / (64 * 1024), cancellationToken);
            Written += buffer.Length;
        }
    }
}
