using System.Net;
using System.Text.RegularExpressions;

namespace Propeller.Cli.Tests;

/// <summary>
/// How a watch (`task watch`, `task run --watch`) reaches the end of a task when the event stream does not bring it: a
/// stream of another manager node, a manager that restarts, a stream refused or held by a proxy, a stream that is no
/// manager's. Against a <see cref="FakeManager"/>, with a watch's timers made short (<see cref="Cli.Fast"/>).
/// </summary>
public sealed partial class WatchFallbackTests
{
    private const string Id = FakeManager.TaskId;

    private const string Ping = "event: ping\ndata: {}\n\n";

    private static List<string> StateLines(string stdout) => [.. stdout.Split('\n').Select(l => StateLine().Match(l)).Where(m => m.Success).Select(m => m.Groups[1].Value)];

    [GeneratedRegex(@"^\+\d+\.\d+s  (.+)$")]
    private static partial Regex StateLine();

    private static bool IsWait(HttpRequestMessage request) => request.RequestUri!.Query.StartsWith("?wait=", StringComparison.Ordinal);

    private static HttpResponseMessage History(int version) =>
        FakeManager.Json("[" + string.Join(',', Enumerable.Range(1, version).Select(v => $$"""{"version":{{v}},"type":"task.changed.v1"}""")) + "]");

    /// <summary>
    /// The task ends on another manager node: the stream of the node the watch is connected to says nothing of it (it
    /// pings, or it is busy and sends nothing). After a quiet while the task is read again, found completed: exit 0.
    /// Pings do not count as news (the quiet while is not restarted by them). It waited until --timeout (exit 4).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Watch_OfATaskThatEndsOnAnotherNode_ReadsItAgainAfterAQuietWhile(bool pings)
    {
        var reads = 0;
        var quiet = pings
            ? Enumerable.Repeat(FakeManager.After(TimeSpan.FromMilliseconds(20), Ping), 5000) // 100 s of pings, 10 times in each quiet while
            : [FakeManager.After(TimeSpan.FromHours(1), Ping)];
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => FakeManager.Events([FakeManager.Part(FakeManager.Hello), .. quiet]),
            $"/tasks/{Id}/history" => History(2),
            $"/tasks/{Id}" when !IsWait(request) => FakeManager.Json(FakeManager.Task(Interlocked.Increment(ref reads) == 1 ? 2 : 3)),
            _ => new HttpResponseMessage(HttpStatusCode.NotFound),
        }));

        var watch = await Cli.RunFastAsync(manager, "task", "watch", Id, "--timeout", "10s");

        watch.Exit.ShouldBe(0, watch.ToString());
        StateLines(watch.Out).ShouldBe(["running on p1", "completed on p1"], watch.ToString());
        watch.Out.Trim().Split('\n')[^1].ShouldBe("42");
        manager.Requests.ShouldNotContain(r => r.Contains("?wait=", StringComparison.Ordinal), "the stream was left for long polling");
    }

    /// <summary>
    /// The stream ends as the manager restarts, and the long polls that finish the watch meet it still down: asked again
    /// (with backoff) until it answers, exit 0. The first failed poll ended the watch with exit 3.
    /// </summary>
    [Fact]
    public async Task Watch_WhenTheManagerIsStillDownAfterTheStreamEnds_AsksAgainUntilItAnswers()
    {
        var polls = 0;
        var manager = new FakeManager((request, _) => request.RequestUri!.AbsolutePath switch
        {
            "/events" => Task.FromResult(FakeManager.Events(FakeManager.Part(FakeManager.Hello))),
            $"/tasks/{Id}/history" => Task.FromResult(History(2)),
            $"/tasks/{Id}" when IsWait(request) => Interlocked.Increment(ref polls) <= 3
                ? throw new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (manager.fake:80)")
                : Task.FromResult(FakeManager.Json(FakeManager.Task(3))),
            $"/tasks/{Id}" => Task.FromResult(FakeManager.Json(FakeManager.Task(2))),
            _ => Task.FromResult(new HttpResponseMessage(HttpStatusCode.NotFound)),
        });

        var watch = await Cli.RunFastAsync(manager, "task", "watch", Id, "--timeout", "30s");

        watch.Exit.ShouldBe(0, watch.ToString());
        watch.Out.Trim().Split('\n')[^1].ShouldBe("42");
        polls.ShouldBe(4);
        watch.Err.ShouldContain("cannot reach the manager", Case.Sensitive, watch.ToString());
        watch.Err.ShouldContain("asking again until --timeout", Case.Sensitive, watch.ToString());
    }

    /// <summary>
    /// The stream ends as the manager restarts, and a gateway or load balancer before it answers the long polls 502, 503
    /// or 504 until it is back: asked again (with backoff) like a manager not reached, exit 0. The first such answer ended
    /// the watch with exit 1.
    /// </summary>
    [Theory]
    [InlineData(HttpStatusCode.BadGateway)]
    [InlineData(HttpStatusCode.ServiceUnavailable)]
    [InlineData(HttpStatusCode.GatewayTimeout)]
    public async Task Watch_WhenAGatewayAnswers5xxWhileTheManagerRestarts_AsksAgainUntilItAnswers(HttpStatusCode status)
    {
        var polls = 0;
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => FakeManager.Events(FakeManager.Part(FakeManager.Hello)),
            $"/tasks/{Id}/history" => History(2),
            $"/tasks/{Id}" when IsWait(request) => Interlocked.Increment(ref polls) <= 3
                ? new HttpResponseMessage(status) { Content = new StringContent("<html>upstream not there</html>") }
                : FakeManager.Json(FakeManager.Task(3)),
            $"/tasks/{Id}" => FakeManager.Json(FakeManager.Task(2)),
            _ => new HttpResponseMessage(HttpStatusCode.NotFound),
        }));

        var watch = await Cli.RunFastAsync(manager, "task", "watch", Id, "--timeout", "30s");

        watch.Exit.ShouldBe(0, watch.ToString());
        watch.Out.Trim().Split('\n')[^1].ShouldBe("42");
        polls.ShouldBe(4);
        watch.Err.ShouldContain($"{(int)status} ", Case.Sensitive, watch.ToString());
        watch.Err.ShouldContain("asking again until --timeout", Case.Sensitive, watch.ToString());
    }

    /// <summary>
    /// Other error answers of the long polls (here a 500) are the manager's answer, not its absence: exit 1 at once, the
    /// status on stderr, not asked again until --timeout.
    /// </summary>
    [Fact]
    public async Task Watch_WhenALongPollIsAnswered500_FailsWithExit1()
    {
        var polls = 0;
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => FakeManager.Events(FakeManager.Part(FakeManager.Hello)),
            $"/tasks/{Id}/history" => History(2),
            $"/tasks/{Id}" when IsWait(request) => Interlocked.Increment(ref polls) == 1
                ? new HttpResponseMessage(HttpStatusCode.InternalServerError) { Content = new StringContent("""{"error":"boom"}""") }
                : FakeManager.Json(FakeManager.Task(3)),
            $"/tasks/{Id}" => FakeManager.Json(FakeManager.Task(2)),
            _ => new HttpResponseMessage(HttpStatusCode.NotFound),
        }));

        var watch = await Cli.RunFastAsync(manager, "task", "watch", Id, "--timeout", "30s");

        watch.Exit.ShouldBe(1, watch.ToString());
        polls.ShouldBe(1);
        watch.Err.ShouldContain("500 Internal Server Error from GET", Case.Sensitive, watch.ToString());
        watch.Err.ShouldContain("boom", Case.Sensitive, watch.ToString());
        watch.Err.ShouldNotContain("asking again", Case.Sensitive, watch.ToString());
    }

    /// <summary>
    /// The task is read again after a quiet while of the stream, and a gateway answers 503 (the node behind it restarting):
    /// read again after the next quiet while, found completed, exit 0. The 503 ended the watch with exit 1.
    /// </summary>
    [Fact]
    public async Task Watch_WhenTheReadAfterAQuietWhileIsAnswered503_ReadsAgainAfterTheNext()
    {
        var reads = 0;
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => FakeManager.Events(FakeManager.Part(FakeManager.Hello), FakeManager.After(TimeSpan.FromHours(1), Ping)),
            $"/tasks/{Id}/history" => History(2),
            $"/tasks/{Id}" when !IsWait(request) => Interlocked.Increment(ref reads) switch
            {
                1 => FakeManager.Json(FakeManager.Task(2)),
                2 => new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) { Content = new StringContent("no upstream") },
                _ => FakeManager.Json(FakeManager.Task(3)),
            },
            _ => new HttpResponseMessage(HttpStatusCode.NotFound),
        }));

        var watch = await Cli.RunFastAsync(manager, "task", "watch", Id, "--timeout", "10s");

        watch.Exit.ShouldBe(0, watch.ToString());
        StateLines(watch.Out).ShouldBe(["running on p1", "completed on p1"], watch.ToString());
        reads.ShouldBe(3);
    }

    /// <summary>
    /// `task run --watch` whose event stream is refused (a manager without /events, a proxy that does not pass it on)
    /// still starts its task and waits for it by long polling: exit 0. It stopped with the refusal (exit 1), the task
    /// created and never started.
    /// </summary>
    [Theory]
    [InlineData(HttpStatusCode.NotFound)]
    [InlineData(HttpStatusCode.BadGateway)]
    [InlineData(HttpStatusCode.ServiceUnavailable)]
    public async Task RunWithWatch_WhenTheEventStreamIsRefused_StartsTheTask_AndWaitsByLongPolling(HttpStatusCode refusal)
    {
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => new HttpResponseMessage(refusal) { Content = new StringContent("""{"error":"no events here"}""") },
            "/tasks" => FakeManager.Json(FakeManager.Task(0)),
            $"/tasks/{Id}/start" => FakeManager.Json(FakeManager.Task(1)),
            _ => FakeManager.Json(FakeManager.Task(3)),
        }));

        var run = await Cli.RunFastAsync(manager, "task", "run", "--image-url", "reg/x/add:v1", "--watch", "--timeout", "10s");

        run.Exit.ShouldBe(0, run.ToString());
        run.Out.Trim().Split('\n')[^1].ShouldBe("42");
        manager.Requests.ShouldContain($"POST {FakeManager.Url}/tasks/{Id}/start");
        manager.Requests.ShouldContain($"GET {FakeManager.Url}/tasks/{Id}?wait=30s");
        run.Err.ShouldContain("waiting by long polling instead", Case.Sensitive, run.ToString());
    }

    /// <summary>
    /// `task run --watch` starts its task once the stream's headers arrive (the manager has subscribed by then), not on
    /// its first event: behind a proxy that holds the stream's first bytes, the start waited for them until --timeout.
    /// </summary>
    [Fact]
    public async Task RunWithWatch_StartsTheTaskOnceTheStreamsHeadersArrive_BeforeAnyEvent()
    {
        var started = 0;
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => FakeManager.Events(FakeManager.After(TimeSpan.FromHours(1), FakeManager.Hello)),
            "/tasks" => FakeManager.Json(FakeManager.Task(0)),
            $"/tasks/{Id}/start" => FakeManager.Json(FakeManager.Task(Interlocked.Exchange(ref started, 1) + 1)),
            $"/tasks/{Id}/history" => History(Volatile.Read(ref started) == 1 ? 4 : 1),
            $"/tasks/{Id}" => FakeManager.Json(FakeManager.Task(Volatile.Read(ref started) == 1 ? 3 : 0)),
            _ => new HttpResponseMessage(HttpStatusCode.NotFound),
        }));

        var run = await Cli.RunFastAsync(manager, "task", "run", "--image-url", "reg/x/add:v1", "--watch", "--timeout", "10s");

        run.Exit.ShouldBe(0, run.ToString());
        run.Out.Trim().Split('\n')[^1].ShouldBe("42");
        manager.Requests.ShouldContain($"POST {FakeManager.Url}/tasks/{Id}/start");
    }

    /// <summary>
    /// An event stream with an event (here a line) that does not end is refused at 16 MiB, one line and exit 1: the
    /// parser kept the line in memory as long as it grew.
    /// </summary>
    [Fact]
    public async Task AnEventOver16MiB_IsRefused_AndExit1()
    {
        var mebibyte = new string('x', 1024 * 1024);
        var manager = new FakeManager((request, _) => Task.FromResult(request.RequestUri!.AbsolutePath switch
        {
            "/events" => FakeManager.Events([FakeManager.Part(FakeManager.Hello + "data: "), .. Enumerable.Repeat(FakeManager.Part(mebibyte), 17)]),
            $"/tasks/{Id}/history" => History(2),
            $"/tasks/{Id}" when IsWait(request) => FakeManager.Json(FakeManager.Task(3)),
            $"/tasks/{Id}" => FakeManager.Json(FakeManager.Task(2)),
            _ => new HttpResponseMessage(HttpStatusCode.NotFound),
        }));

        var watch = await Cli.RunFastAsync(manager, "task", "watch", Id, "--timeout", "30s");

        watch.Exit.ShouldBe(1, watch.ToString());
        watch.Err.Trim().ShouldBe($"propeller: the manager at {FakeManager.Url}/ sent an event of more than 16 MiB on GET /events?task={Id}: not an event of the manager's", watch.ToString());
    }
}
