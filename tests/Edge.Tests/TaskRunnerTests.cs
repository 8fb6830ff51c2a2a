using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Fetching;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

public sealed class TaskRunnerTests : IAsyncDisposable
{
    private readonly InMemoryPublisher _published = new();
    private readonly PropletSettings _settings = TestSettings.Create("me") with { MaxConcurrentTasks = 1 };
    private readonly InProcessRuntime _runtime;
    private readonly HttpClient _http = new();
    private readonly TaskRunner _runner;
    private readonly ChunkAssembler _chunks;

    public TaskRunnerTests()
    {
        _runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance);
        _chunks = new ChunkAssembler(_settings.MaxBinarySize, TimeProvider.System);
        var fetcher = new BinaryFetcher(_settings, _chunks, _published, _http);
        _runner = new TaskRunner(_settings, _runtime, fetcher, _published, null, NullLogger<TaskRunner>.Instance);
    }

    public async ValueTask DisposeAsync()
    {
        await _runner.DisposeAsync();
        _runtime.Dispose();
        _http.Dispose();
    }

    [Fact]
    public async Task GivenTheDemoStart_WhenHandled_ThenTheResultIsTheOriginalsShape()
    {
        Start(new { id = "t1", name = "main", file = Modules.AdditionBase64, inputs = new[] { "10", "32" }, proplet_id = "me" });

        var result = await NextResultAsync();

        result.GetRawText().ShouldBe("""{"task_id":"t1","proplet_id":"me","results":"42","error":null}""");
    }

    [Fact]
    public async Task GivenAnInvalidStart_WhenHandled_ThenAnErrorResultIsPublished()
    {
        Start(new { id = "t2", name = "main" });

        var result = await NextResultAsync();

        result.GetProperty("task_id").GetString().ShouldBe("t2");
        result.GetProperty("results").GetString().ShouldBe("");
        result.GetProperty("error").GetString().ShouldBe("either file or image_url must be provided");
    }

    /// <summary>An invalid start's error result names the attempt and dispatch the start named, as a valid one's does: one
    /// naming none applies to the manager's current attempt, so a stale invalid start failed a newer attempt.</summary>
    [Fact]
    public async Task GivenAnInvalidStartOfAnAttempt_WhenHandled_ThenItsErrorResultNamesThatAttempt()
    {
        Start(new { id = "bad", name = "main", file = Modules.AdditionBase64, cli_args = new[] { "--timeout", "0" }, attempt = 3, dispatch = 2 });
        Start(new { id = "bad-env", name = "main", file = Modules.AdditionBase64, env = new Dictionary<string, string> { ["A=B"] = "x" }, attempt = 4, dispatch = 1 });
        _runner.HandleStart(Encoding.UTF8.GetBytes("""{"id":"bad-json","name":"main","inputs":[true],"attempt":5,"dispatch":1}""")); // not decoded: read leniently

        var results = new[] { await NextResultAsync(), await NextResultAsync(), await NextResultAsync() }.ToDictionary(r => r.GetProperty("task_id").GetString()!);

        results["bad"].GetProperty("error").GetString()!.ShouldStartWith("invalid start request: --timeout '0'");
        results["bad"].GetProperty("attempt").GetInt32().ShouldBe(3);
        results["bad"].GetProperty("dispatch").GetInt32().ShouldBe(2);
        results["bad-env"].GetProperty("attempt").GetInt32().ShouldBe(4);
        results["bad-json"].GetProperty("attempt").GetInt32().ShouldBe(5);
    }

    /// <summary>An inline module is capped by PROPLET_MAX_BINARY_SIZE, as a download and an assembly are.</summary>
    [Fact]
    public async Task GivenAnInlineModuleOverTheBinarySizeLimit_WhenStarted_ThenAnErrorResultNamesTheLimit()
    {
        var settings = _settings with { MaxBinarySize = 1024 };
        await using var runner = new TaskRunner(settings, _runtime, new BinaryFetcher(settings, _chunks, _published, _http), _published, null, NullLogger<TaskRunner>.Instance);
        // The addition module with a 2 KiB custom section: it runs when nothing caps it.
        var size = 2 + 2048;
        byte[] section = [0, (byte)(0x80 | (size & 0x7f)), (byte)(size >> 7), 1, (byte)'p'];
        byte[] module = [.. Modules.Addition, .. section, .. new byte[2048]];

        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "big", name = "main", file = Convert.ToBase64String(module), inputs = new[] { "1", "2" } }));

        (await NextResultAsync()).GetProperty("error").GetString()
            .ShouldBe($"the inline wasm file of {module.Length} bytes is larger than PROPLET_MAX_BINARY_SIZE (1024 bytes)");
    }

    /// <summary>
    /// The only slot busy, an inline module over PROPLET_MAX_BINARY_SIZE is refused at once with the size's error: before,
    /// it waited for the slot (its text counted against PROPLET_MAX_WAITING_BYTES), and with the waiting room full it was
    /// refused as busy instead.
    /// </summary>
    [Fact]
    public async Task GivenTheSlotBusy_WhenAnInlineModuleOverTheBinarySizeLimitStarts_ThenItIsRefusedForItsSizeAtOnce()
    {
        var settings = _settings with { MaxBinarySize = 1024, MaxWaitingBytes = 4096 };
        await using var runner = new TaskRunner(settings, _runtime, new BinaryFetcher(settings, _chunks, _published, _http), _published, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "spin", name = "main", file = Convert.ToBase64String(Modules.Spin) }));
        runner.RunningCount.ShouldBe(1);
        var size = 2 + 4096;
        byte[] section = [0, (byte)(0x80 | (size & 0x7f)), (byte)(size >> 7), 1, (byte)'p'];
        byte[] module = [.. Modules.Addition, .. section, .. new byte[4096]];

        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "big", name = "main", file = Convert.ToBase64String(module), inputs = new[] { "1", "2" } }));

        var result = await NextResultAsync();
        result.GetProperty("task_id").GetString().ShouldBe("big");
        result.GetProperty("error").GetString().ShouldBe($"the inline wasm file of {module.Length} bytes is larger than PROPLET_MAX_BINARY_SIZE (1024 bytes)");
        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"spin","broadcast":false}"""));
        (await NextResultAsync()).GetProperty("task_id").GetString().ShouldBe("spin");
    }

    [Fact]
    public async Task GivenStartsForOtherProplets_WhenHandled_ThenNothingIsPublished()
    {
        Start(new { id = "t3", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, proplet_id = "other" });
        Start(new { id = "t3b", name = "main", proplet_id = "other" });
        Start(new { id = "t4", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" } });

        (await NextResultAsync()).GetProperty("task_id").GetString().ShouldBe("t4");
        _published.TryNext(out _).ShouldBeFalse();
    }

    [Fact]
    public async Task GivenARunningTask_WhenStartedAgainAndThenStopped_ThenTheDuplicateIsIgnoredAndOneStoppedResultSent()
    {
        var spin = Convert.ToBase64String(Modules.Spin);
        Start(new { id = "loop", name = "main", file = spin });
        Start(new { id = "loop", name = "main", file = spin });
        _runner.RunningCount.ShouldBe(1);

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"loop","broadcast":false}"""));

        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Task loop was stopped before completion");
        _published.TryNext(out _).ShouldBeFalse();
    }

    [Fact]
    public async Task GivenOneSlotTakenByAnEndlessTask_WhenASecondTaskWaits_ThenItRunsOnceTheFirstIsStopped()
    {
        using var http = new HttpClient();
        var runtime = new RunWatchingRuntime(_runtime);
        await using var runner = new TaskRunner(_settings, runtime, new BinaryFetcher(_settings, _chunks, _published, http), _published, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "hog", name = "main", file = Convert.ToBase64String(Modules.Spin) }));
        await runtime.Began.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken); // the hog has the slot (starts take theirs in no set order)
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "next", name = "main", file = Modules.AdditionBase64, inputs = new[] { "2", "3" } }));
        runner.RunningCount.ShouldBe(2);

        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"hog"}"""));

        (await NextResultAsync()).GetProperty("task_id").GetString().ShouldBe("hog");
        var second = await NextResultAsync();
        second.GetProperty("task_id").GetString().ShouldBe("next");
        second.GetProperty("results").GetString().ShouldBe("5");
    }

    /// <summary>
    /// Starts waiting for a slot hold their inline modules; what they hold together is bounded (PROPLET_MAX_WAITING_BYTES):
    /// one beyond it is refused at once with an error result naming the limit, and those within it run once a slot frees.
    /// Unbounded, a flood of large starts held ~20 MB each until the proplet ran out of memory.
    /// </summary>
    [Fact]
    public async Task GivenStartsWaitingForASlot_WhenTheirModulesPassTheWaitingLimit_ThenTheOneBeyondIsRefusedAndTheOthersRun()
    {
        var settings = _settings with { MaxWaitingBytes = 1 << 20 };
        using var http = new HttpClient();
        var runtime = new RunWatchingRuntime(_runtime);
        await using var runner = new TaskRunner(settings, runtime, new BinaryFetcher(settings, _chunks, _published, http), _published, null, NullLogger<TaskRunner>.Instance);
        void StartOn(object message) => runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(message));

        // The addition module with a 240 KiB custom section: 320 Ki characters of base64, 640 KiB held while waiting.
        var padding = new byte[240 << 10];
        var size = 2 + padding.Length; // the name's length and name, then the padding: a three-byte LEB128 below 2^21
        byte[] section = [0, (byte)(0x80 | (size & 0x7f)), (byte)(0x80 | ((size >> 7) & 0x7f)), (byte)(size >> 14), 1, (byte)'p'];
        var padded = Convert.ToBase64String([.. Modules.Addition, .. section, .. padding]);

        StartOn(new { id = "hog", name = "main", file = Convert.ToBase64String(Modules.Spin) });
        await runtime.Began.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken); // the hog has the slot (starts take theirs in no set order)
        StartOn(new { id = "first", name = "main", file = padded, inputs = new[] { "2", "3" } });
        while (runner.WaitingBytes == 0) // waiting for a slot before the second comes (starts are admitted in no set order)
        {
            await Task.Delay(5, TestContext.Current.CancellationToken);
        }

        StartOn(new { id = "second", name = "main", file = padded, inputs = new[] { "4", "5" } });

        var refused = await NextResultAsync();
        refused.GetProperty("task_id").GetString().ShouldBe("second");
        refused.GetProperty("error").GetString()!.ShouldBe(
            "proplet me is busy: the starts waiting for one of its 1 task slots already hold 0.6 MiB of modules, and this one's 0.6 MiB would pass PROPLET_MAX_WAITING_BYTES (1.0 MiB)");
        StartOn(new { id = "small", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "1" } });

        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"hog"}"""));
        var results = new Dictionary<string, string?>();
        for (var i = 0; i < 3; i++)
        {
            var result = await NextResultAsync();
            results[result.GetProperty("task_id").GetString()!] = result.GetProperty("results").GetString();
        }

        results["first"].ShouldBe("5");
        results["small"].ShouldBe("2", "a start within the limit still waits for its slot");
    }

    [Fact]
    public async Task GivenATimeoutFlag_WhenTheTaskRunsForever_ThenItFailsWithTheLimit()
    {
        Start(new { id = "slow", name = "main", file = Convert.ToBase64String(Modules.Spin), cli_args = new[] { "--timeout", "0.2" } });

        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Task slow exceeded its time limit of 0.2 s and was stopped");
    }

    [Fact]
    public async Task GivenADaemon_WhenStarted_ThenAnEmptySuccessIsPublishedAtOnceAndAStopStillEndsIt()
    {
        Start(new { id = "d1", name = "main", file = Convert.ToBase64String(Modules.Spin), daemon = true });

        var result = await NextResultAsync();
        result.GetProperty("results").GetString().ShouldBe("");
        result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null);
        result.GetProperty("running").GetBoolean().ShouldBeTrue(); // the manager can still stop the completed task
        _runner.RunningCount.ShouldBe(1);

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"d1"}"""));
        while (_runner.RunningCount > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        _published.TryNext(out _).ShouldBeFalse();
    }

    /// <summary>
    /// A daemon that ends on its own (it returns, or traps) after its "started" result: its end is published
    /// (<c>"running":false</c>, with what it produced or its error), so the manager no longer takes it for serving (the
    /// original sends nothing, and its task was taken for running for ever). That end is the run's result a start of
    /// the run delivered again gets. A stopped daemon sends nothing more (above).
    /// </summary>
    [Fact]
    public async Task GivenADaemon_WhenItEndsOnItsOwn_ThenItsEndIsPublishedAfterItsStart()
    {
        object Daemon(string id, byte[] module) => new { id, name = "main", file = Convert.ToBase64String(module), inputs = new[] { "2", "3" }, daemon = true, attempt = 1, dispatch = 1 };
        Start(Daemon("returns", Modules.Addition));
        var started = await NextResultAsync();
        (started.GetProperty("results").GetString(), started.GetProperty("running").GetBoolean()).ShouldBe(("", true));
        var ended = await NextResultAsync();
        (ended.GetProperty("task_id").GetString(), ended.GetProperty("results").GetString(), ended.GetProperty("running").GetBoolean(), ended.GetProperty("attempt").GetInt32())
            .ShouldBe(("returns", "5", false, 1));
        ended.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null);
        while (_runner.RunningCount > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Start(Daemon("returns", Modules.Addition)); // delivered again: not run again, its end sent again
        (await NextResultAsync()).GetRawText().ShouldBe(ended.GetRawText());

        Start(Daemon("traps", Modules.Trap));
        (await NextResultAsync()).GetProperty("running").GetBoolean().ShouldBeTrue();
        var trapped = await NextResultAsync();
        trapped.GetProperty("running").GetBoolean().ShouldBeFalse();
        trapped.GetProperty("error").GetString().ShouldNotBeNullOrEmpty();
    }

    /// <summary>
    /// A daemon that serves here, started again by a later dispatch of its attempt (re-dispatched back here: the proplet
    /// was taken for gone): the run goes on and the start gets its "started" result again (the first was ignored while
    /// the task waited for a proplet, and the task then waited for ever). A start of the same dispatch (a redelivery)
    /// is only a duplicate.
    /// </summary>
    [Fact]
    public async Task GivenAServingDaemon_WhenALaterDispatchOfItsAttemptStartsHere_ThenItsStartedResultIsSentAgain()
    {
        object Daemon(int dispatch) => new { id = "back", name = "main", file = Convert.ToBase64String(Modules.Spin), daemon = true, attempt = 1, dispatch };
        Start(Daemon(1));
        var started = await NextResultAsync();
        started.GetProperty("running").GetBoolean().ShouldBeTrue();

        started.GetProperty("dispatch").GetInt32().ShouldBe(1);

        Start(Daemon(1));
        Start(Daemon(2));
        var again = await NextResultAsync(); // the same result, as the later dispatch's (the manager ignores an earlier one's)
        again.GetRawText().ShouldBe(started.GetRawText().Replace("\"dispatch\":1", "\"dispatch\":2", StringComparison.Ordinal));
        _runner.RunningCount.ShouldBe(1);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        _published.TryNext(out var extra).ShouldBeFalse(extra.Payload.ToString());

        _runner.HandleStop("""{"id":"back"}"""u8.ToArray());
    }

    /// <summary>A daemon's success is sent once it starts; one whose binary cannot be had never starts and gets the error
    /// instead of no result at all (the manager kept it Running for ever).</summary>
    [Fact]
    public async Task GivenADaemonWhoseBinaryCannotBeFetched_WhenStarted_ThenItsErrorIsPublished()
    {
        Start(new { id = "d2", name = "main", image_url = "http://127.0.0.1:1/x.wasm", daemon = true });

        var result = await NextResultAsync();
        result.GetProperty("task_id").GetString().ShouldBe("d2");
        result.GetProperty("error").GetString().ShouldNotBeNullOrEmpty();
        result.TryGetProperty("running", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task GivenUnsupportedFeatures_WhenStarted_ThenTheyAreRefusedWithAnError()
    {
        Start(new { id = "l1", name = "main", file = Modules.AdditionBase64, latent = true });
        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("latent tasks require a WASM component; task l1 is not a component");

        Start(new { id = "b64", name = "main", file = "not base64!" });
        (await NextResultAsync()).GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith("Failed to decode the base64 file:");
    }

    [Fact]
    public async Task GivenAnOciImageUrl_WhenStarted_ThenTheProxyIsAskedAndTheChunksAreRun()
    {
        Start(new { id = "oci", name = "main", image_url = "registry.local/add:v1", inputs = new[] { "20", "22" } });

        var request = await _published.NextAsync(Topics.RegistryRequest, TestContext.Current.CancellationToken);
        request.GetRawText().ShouldBe("""{"app_name":"registry.local/add:v1","formats":["binary"]}""");
        var bytes = Modules.Addition; // answered as the original proxy does, which ignores formats: JSON chunks
        _chunks.Add(new ChunkMessage("registry.local/add:v1", 1, 2, Convert.ToBase64String(bytes[20..]))).ShouldBeNull();
        _chunks.Add(new ChunkMessage("registry.local/add:v1", 0, 2, Convert.ToBase64String(bytes[..20]))).ShouldBeNull();

        (await NextResultAsync()).GetProperty("results").GetString().ShouldBe("42");
    }

    /// <summary>A remote binary is fetched outside the slots: an image_url start whose proxy does not answer holds none
    /// while it waits, and an inline task runs meanwhile. Before, it held the only slot for up to PROPLET_CHUNK_WAIT (60 s).</summary>
    [Fact]
    public async Task GivenOneSlotAndAnImageNobodySends_WhenAnInlineTaskStarts_ThenItRunsWhileTheFetchWaits()
    {
        Start(new { id = "remote", name = "main", image_url = "registry.local/silent:v1" });
        await _published.NextAsync(Topics.RegistryRequest, TestContext.Current.CancellationToken); // fetching (before: in the slot)

        Start(new { id = "inline", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" } });

        var result = await NextResultAsync();
        result.GetProperty("task_id").GetString().ShouldBe("inline");
        result.GetProperty("results").GetString().ShouldBe("3");
        _runner.Held().Select(h => h.TaskId).ShouldBe(["remote"]); // still waiting for its image
    }

    [Fact]
    public async Task GivenChunksWhoseSha256DoesNotMatch_WhenAssembled_ThenTheTaskFailsWithAVerificationError()
    {
        Start(new { id = "bad", name = "main", image_url = "registry.local/corrupt:v1", inputs = new[] { "20", "22" } });
        await _published.NextAsync(Topics.RegistryRequest, TestContext.Current.CancellationToken);
        var bytes = Modules.Addition;
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
        var corrupted = (byte[])bytes.Clone();
        corrupted[^1] ^= 0xFF; // one flipped byte in the last chunk

        _chunks.Add(new ChunkMessage("registry.local/corrupt:v1", 0, 2, Convert.ToBase64String(corrupted[..20])) { Sha256 = sha }).ShouldBeNull();
        _chunks.Add(new ChunkMessage("registry.local/corrupt:v1", 1, 2, Convert.ToBase64String(corrupted[20..])) { Sha256 = sha }).ShouldNotBeNull();

        var error = (await NextResultAsync()).GetProperty("error").GetString().ShouldNotBeNull();
        error.ShouldContain("image registry.local/corrupt:v1 failed verification");
        error.ShouldContain($"the proxy sent sha256 {sha}");
    }

    [Fact]
    public async Task GivenTheProxyReportsAFailure_WhenWaiting_ThenTheTaskFailsWithItsReasonAtOnce()
    {
        Start(new { id = "gone", name = "main", image_url = "registry.local/missing:v9" });
        await _published.NextAsync(Topics.RegistryRequest, TestContext.Current.CancellationToken);

        _chunks.Fail("registry.local/missing:v9", "image registry.local/missing:v9: tag v9 not found").ShouldBe(1);

        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("image registry.local/missing:v9: tag v9 not found");
    }

    [Fact]
    public void GivenMalformedStops_WhenHandled_ThenNothingThrows()
    {
        _runner.HandleStop(Encoding.UTF8.GetBytes("nope"));
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":""}"""));
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"unknown"}"""));
        _runner.HandleStart(Encoding.UTF8.GetBytes("\u0000\u0001"));
    }

    [Fact]
    public async Task GivenThousandsOfMangledStartsAndStops_WhenHandled_ThenNothingThrowsAndTheRunnerStillWorks()
    {
        var random = new Random(7);
        var valid = JsonSerializer.SerializeToUtf8Bytes(new { id = "fz", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" } });
        for (var i = 0; i < 3000; i++)
        {
            var payload = (byte[])valid.Clone();
            for (var flips = random.Next(1, 6); flips > 0; flips--)
            {
                payload[random.Next(payload.Length)] = (byte)random.Next(256);
            }

            if (i % 7 == 0)
            {
                payload = payload[..random.Next(payload.Length)];
            }

            _runner.HandleStart(payload);
            _runner.HandleStop(payload);
        }

        // Random bytes as a module: an error result, not a crash.
        var junk = new byte[256];
        random.NextBytes(junk);
        Start(new { id = "junk", name = "main", file = Convert.ToBase64String([0, 97, 115, 109, 1, 0, 0, 0, .. junk]) });
        while (true)
        {
            var result = await NextResultAsync();
            if (result.GetProperty("task_id").GetString() == "junk")
            {
                result.GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith("Failed to compile wasm module from binary:");
                break;
            }
        }
    }

    [Fact]
    public async Task GivenARunningTask_WhenStoppedAndStartedAgainAtOnce_ThenTheNewStartRunsAfterTheStoppedOne()
    {
        Start(new { id = "again", name = "main", file = Convert.ToBase64String(Modules.Spin) });
        _runner.RunningCount.ShouldBe(1);

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"again","broadcast":false}"""));
        Start(new { id = "again", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" } }); // usually while the first unwinds

        // The new run starts once the stopped one let go of the id, which may be just before the stopped result is out.
        var results = new[] { await NextResultAsync(), await NextResultAsync() };
        results.ShouldAllBe(r => r.GetProperty("task_id").GetString() == "again");
        results.Select(r => r.GetProperty("error").GetString()).ShouldContain("Task again was stopped before completion");
        results.Select(r => r.GetProperty("results").GetString()).ShouldContain("3");
    }

    /// <summary>A start waiting for its stopped run to unwind is itself stopped by a stop that comes meanwhile: it never
    /// runs (it ran after the stop, and its success followed the manager's stop). The first run unwinds until released, so
    /// the second start is surely waiting when its stop comes, and the runtime's count tells never-ran from ran-and-stopped.</summary>
    [Fact]
    public async Task GivenAStartWaitingForAStoppedRun_WhenStoppedToo_ThenItNeverRuns()
    {
        var runtime = new GatedUnwindRuntime();
        await using var runner = new TaskRunner(_settings, runtime, new BinaryFetcher(_settings, _chunks, _published, _http), _published, null, NullLogger<TaskRunner>.Instance);
        var start = JsonSerializer.SerializeToUtf8Bytes(new { id = "twice", name = "main", file = Modules.AdditionBase64 });
        runner.HandleStart(start);
        await runtime.Began.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"twice"}"""));
        runner.HandleStart(start); // waits for the stopped run, which unwinds until released
        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"twice"}"""));
        runtime.Release();

        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Task twice was stopped before completion");
        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Task twice was stopped before completion");
        while (runner.RunningCount > 0 || runner.Held().Count > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        runtime.Runs.ShouldBe(1);
        _published.TryNext(out var extra).ShouldBeFalse(extra.Payload.ToString());
    }

    /// <summary>
    /// A start delivered again (QoS 1/2) while its own run, timed out, still unwinds waits for that run to let go of the
    /// id, as a start after a stop does; then that run has finished, and it is not run again. Before, it ran the task a
    /// second time and sent a second result.
    /// </summary>
    [Fact]
    public async Task GivenATimedOutRunUnwinding_WhenItsStartIsDeliveredAgain_ThenTheTaskRunsOnceWithOneResult()
    {
        var runtime = new GatedUnwindRuntime();
        var log = new EventLogger();
        await using var runner = new TaskRunner(_settings, runtime, new BinaryFetcher(_settings, _chunks, _published, _http), _published, null, log);
        var start = JsonSerializer.SerializeToUtf8Bytes(new { id = "late", name = "main", file = Modules.AdditionBase64, cli_args = new[] { "--timeout", "0.05" }, attempt = 1, dispatch = 1 });
        runner.HandleStart(start);
        await runtime.Aborted.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken); // timed out, unwinding

        runner.HandleStart(start); // waits for the timed-out run (it would run next, as after a stop)
        runtime.Release();

        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Task late exceeded its time limit of 0.05 s and was stopped");
        var dropped = log.Logged(8072); // "that run finished here"
        (await Task.WhenAny(dropped, runtime.RanAgain.Task).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).ShouldBe(dropped);
        runtime.Runs.ShouldBe(1);
        _published.TryNext(out var extra).ShouldBeFalse(extra.Payload.ToString());
    }

    [Fact]
    public async Task GivenATaskWhoseMetricsCannotBePublished_WhenItIsStopped_ThenItsResultIsStillSent()
    {
        var publisher = new MetricsRefusingPublisher(_published);
        var fetcher = new BinaryFetcher(_settings, _chunks, publisher, _http);
        var monitor = new Propeller.Edge.Monitoring.TaskMonitor(_settings, publisher, TimeProvider.System, NullLogger<Propeller.Edge.Monitoring.TaskMonitor>.Instance);
        await using var runner = new TaskRunner(_settings, _runtime, fetcher, publisher, monitor, NullLogger<TaskRunner>.Instance);
        var profile = new
        {
            enabled = true,
            interval = 1,
            collect_cpu = true,
            collect_memory = true,
            collect_disk_io = false,
            collect_threads = false,
            collect_file_descriptors = false,
            export_to_mqtt = true,
            retain_history = false,
            history_size = 1,
        };
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "watched", name = "main", file = Convert.ToBase64String(Modules.Spin), monitoring_profile = profile }));

        await publisher.Refused.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"watched","broadcast":false}"""));

        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Task watched was stopped before completion");
        runner.RunningCount.ShouldBe(0);
    }

    /// <summary>
    /// A restart on this proplet (stop of attempt 1, start of attempt 2 while run 1 unwinds): each result names the
    /// attempt of its start, so the manager can tell run 1's late "stopped" result from run 2's.
    /// </summary>
    [Fact]
    public async Task GivenARestartWithAttempts_WhenBothRunsEnd_ThenEachResultNamesItsAttempt()
    {
        Start(new { id = "restart", name = "main", file = Convert.ToBase64String(Modules.Spin), attempt = 1 });
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"restart","broadcast":false,"attempt":1}"""));
        Start(new { id = "restart", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, attempt = 2 });

        // The stopped run unwinds beside the next attempt's run: the two results may go out in either order.
        JsonElement[] results = [await NextResultAsync(), await NextResultAsync()];
        var first = results.Single(r => r.GetProperty("attempt").GetInt32() == 1);
        var second = results.Single(r => r.GetProperty("attempt").GetInt32() == 2);

        first.GetProperty("error").GetString().ShouldBe("Task restart was stopped before completion");
        second.GetProperty("results").GetString().ShouldBe("3");
    }

    /// <summary>
    /// A start that reaches the proplet after the stop of its attempt (the manager retried its publish, recovered it after
    /// a crash or replayed it) is not run: it gets the stopped result of that attempt, and a later attempt still runs.
    /// </summary>
    [Fact]
    public async Task GivenAStopOfAnAttempt_WhenItsStartArrivesAfterIt_ThenItIsNotRunAndALaterAttemptRuns()
    {
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"late","broadcast":false,"attempt":1}"""));
        Start(new { id = "late", name = "main", file = Convert.ToBase64String(Modules.Spin), attempt = 1 });

        var dropped = await NextResultAsync();
        (dropped.GetProperty("error").GetString(), dropped.GetProperty("attempt").GetInt32()).ShouldBe(("Task late was stopped before completion", 1));
        _runner.RunningCount.ShouldBe(0);
        _runner.Started.ShouldBe(0);

        Start(new { id = "late", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, attempt = 2 });
        var next = await NextResultAsync();
        (next.GetProperty("results").GetString(), next.GetProperty("attempt").GetInt32()).ShouldBe(("3", 2));
    }

    /// <summary>
    /// A stop of an earlier attempt that arrives while a later attempt runs (a late stop publish) leaves the run alone;
    /// the stop of its own attempt ends it.
    /// </summary>
    [Fact]
    public async Task GivenALaterAttemptRunning_WhenAStopOfAnEarlierAttemptArrives_ThenItKeepsRunning()
    {
        Start(new { id = "newer", name = "main", file = Convert.ToBase64String(Modules.Spin), attempt = 2 });

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"newer","broadcast":false,"attempt":1}"""));
        await Task.Delay(200, TestContext.Current.CancellationToken);

        _runner.RunningCount.ShouldBe(1);
        _published.TryNext(out var early).ShouldBeFalse(early.Payload.ToString());
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"newer","broadcast":false,"attempt":2}"""));
        var stopped = await NextResultAsync();
        (stopped.GetProperty("error").GetString(), stopped.GetProperty("attempt").GetInt32()).ShouldBe(("Task newer was stopped before completion", 2));
    }

    /// <summary>
    /// A restart whose stop of attempt 1 was lost or is late: the start of attempt 2 stops the run of attempt 1 (its
    /// stopped result, as the stop would have given) and runs once it has ended; it was dropped as a duplicate, and the
    /// manager waited for its result for ever.
    /// </summary>
    [Fact]
    public async Task GivenARunningAttempt_WhenALaterAttemptStartsWithoutItsStop_ThenTheEarlierIsStoppedAndTheLaterRuns()
    {
        Start(new { id = "superseded", name = "main", file = Convert.ToBase64String(Modules.Spin), attempt = 1 });
        _runner.RunningCount.ShouldBe(1);

        Start(new { id = "superseded", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, attempt = 2 });

        // In either order: the manager tells them apart by attempt (the second runs once the first let go of the id,
        // which may be before the first's result is out).
        var results = new[] { await NextResultAsync(), await NextResultAsync() }.OrderBy(r => r.GetProperty("attempt").GetInt32()).ToList();
        (results[0].GetProperty("error").GetString(), results[0].GetProperty("attempt").GetInt32()).ShouldBe(("Task superseded was stopped before completion", 1));
        (results[1].GetProperty("results").GetString(), results[1].GetProperty("attempt").GetInt32()).ShouldBe(("3", 2));
    }

    /// <summary>A start of the attempt that runs (a redelivery) stays a duplicate, and one of an earlier attempt (stale)
    /// is dropped: the run goes on alone.</summary>
    [Fact]
    public async Task GivenARunningAttempt_WhenItsOwnOrAnEarlierAttemptStartsAgain_ThenTheyAreDroppedAndItRunsOn()
    {
        var spin = Convert.ToBase64String(Modules.Spin);
        Start(new { id = "kept", name = "main", file = spin, attempt = 2 });
        Start(new { id = "kept", name = "main", file = spin, attempt = 2 });
        Start(new { id = "kept", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, attempt = 1 });
        await Task.Delay(200, TestContext.Current.CancellationToken);
        _runner.RunningCount.ShouldBe(1);
        _published.TryNext(out var early).ShouldBeFalse(early.Payload.ToString());

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"kept","broadcast":false,"attempt":2}"""));

        var stopped = await NextResultAsync();
        (stopped.GetProperty("error").GetString(), stopped.GetProperty("attempt").GetInt32()).ShouldBe(("Task kept was stopped before completion", 2));
        while (_runner.RunningCount > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        await Task.Delay(200, TestContext.Current.CancellationToken);
        _published.TryNext(out var extra).ShouldBeFalse(extra.Payload.ToString());
    }

    /// <summary>
    /// A run (attempt and dispatch) that finished here is not run again when its start comes again (a QoS 1 redelivery,
    /// or the manager sending it again because this proplet's report of what it holds lacked it: its result was lost on
    /// the way): the start gets that run's result again. A later dispatch of the attempt (a re-dispatch back here) and a
    /// later attempt run. Without dispatch (the original manager) a start runs as before.
    /// </summary>
    [Fact]
    public async Task GivenARunThatFinishedHere_WhenItsStartComesAgain_ThenItsResultIsSentAgainAndALaterDispatchRuns()
    {
        object Addition(int attempt, int? dispatch) => new { id = "once", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, attempt, dispatch };
        Start(Addition(1, 1));
        var first = await NextResultAsync();
        first.GetProperty("results").GetString().ShouldBe("3");
        while (_runner.RunningCount > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Start(Addition(1, 1));
        (await NextResultAsync()).GetRawText().ShouldBe(first.GetRawText());
        await Task.Delay(300, TestContext.Current.CancellationToken);
        _published.TryNext(out var again).ShouldBeFalse(again.Payload.ToString());
        _runner.Started.ShouldBe(1);

        Start(Addition(1, 2));
        (await NextResultAsync()).GetProperty("attempt").GetInt32().ShouldBe(1);
        Start(Addition(2, 1));
        (await NextResultAsync()).GetProperty("attempt").GetInt32().ShouldBe(2);
        Start(Addition(2, null));
        (await NextResultAsync()).GetProperty("attempt").GetInt32().ShouldBe(2);
        _runner.Started.ShouldBe(4);
    }

    /// <summary>
    /// A stop naming one dispatch of an attempt (a run left over from before a re-dispatch) leaves a later dispatch of the
    /// attempt running, and a start of the stopped dispatch arriving after it is not run; the stop of the later dispatch
    /// ends it.
    /// </summary>
    [Fact]
    public async Task GivenALaterDispatchRunning_WhenTheStopOfAnEarlierDispatchArrives_ThenItKeepsRunning()
    {
        var spin = Convert.ToBase64String(Modules.Spin);
        Start(new { id = "moved", name = "main", file = spin, attempt = 1, dispatch = 2 });

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"moved","broadcast":false,"attempt":1,"dispatch":1}"""));
        await Task.Delay(200, TestContext.Current.CancellationToken);
        _runner.RunningCount.ShouldBe(1);
        _published.TryNext(out var early).ShouldBeFalse(early.Payload.ToString());

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"moved","broadcast":false,"attempt":1,"dispatch":2}"""));
        var stopped = await NextResultAsync();
        (stopped.GetProperty("error").GetString(), stopped.GetProperty("attempt").GetInt32(), stopped.GetProperty("dispatch").GetInt32())
            .ShouldBe(("Task moved was stopped before completion", 1, 2));
        while (_runner.RunningCount > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Start(new { id = "moved", name = "main", file = spin, attempt = 1, dispatch = 1 });
        var late = await NextResultAsync(); // names its dispatch: the manager, on dispatch 2, ignores it
        (late.GetProperty("error").GetString(), late.GetProperty("dispatch").GetInt32()).ShouldBe(("Task moved was stopped before completion", 1));
        _runner.Started.ShouldBe(1);
    }

    /// <summary>
    /// A task dispatched back here while its earlier dispatch still runs here (the proplet was taken for gone and came
    /// back): the run becomes the later dispatch. The stop of the earlier dispatch, which the manager sends when it finds
    /// the run held here while the task waits, then spares it when it arrives after the start (it stopped the run the
    /// task now waited for: a daemon left serving nothing, a task failed); the report names the later dispatch, and the
    /// stop of the later dispatch ends it.
    /// </summary>
    [Fact]
    public async Task GivenARunDispatchedHereAgain_WhenTheStopOfItsEarlierDispatchArrivesAfter_ThenItKeepsRunning()
    {
        var spin = Convert.ToBase64String(Modules.Spin);
        Start(new { id = "back", name = "main", file = spin, attempt = 1, dispatch = 1 });
        while (_runner.RunningCount == 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Start(new { id = "back", name = "main", file = spin, attempt = 1, dispatch = 2 });
        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"back","broadcast":false,"attempt":1,"dispatch":1}"""));
        await Task.Delay(200, TestContext.Current.CancellationToken);
        _runner.RunningCount.ShouldBe(1);
        _published.TryNext(out var early).ShouldBeFalse(early.Payload.ToString());
        _runner.Held().ShouldBe([new HeldTask("back", 1, 2)]);

        _runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"back","broadcast":false,"attempt":1,"dispatch":2}"""));
        var stopped = await NextResultAsync();
        (stopped.GetProperty("error").GetString(), stopped.GetProperty("dispatch").GetInt32()).ShouldBe(("Task back was stopped before completion", 2));
        _runner.Started.ShouldBe(1);
    }

    /// <summary>What the proplet holds (reported with its discovery): a running task with the attempt its start named, a
    /// start without one, and nothing once they ended.</summary>
    [Fact]
    public async Task GivenRunningTasks_WhenAskedWhatItHolds_ThenEachIsListedWithItsAttemptUntilItEnds()
    {
        var settings = _settings with { MaxConcurrentTasks = 4 };
        var fetcher = new BinaryFetcher(settings, _chunks, _published, _http);
        await using var runner = new TaskRunner(settings, _runtime, fetcher, _published, null, NullLogger<TaskRunner>.Instance);
        var spin = Convert.ToBase64String(Modules.Spin);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "a", name = "main", file = spin, attempt = 3, dispatch = 1 }));
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "b", name = "main", file = spin }));

        runner.Held().OrderBy(h => h.TaskId, StringComparer.Ordinal).ShouldBe([new HeldTask("a", 3, 1), new HeldTask("b", null)]);
        JsonSerializer.Serialize(runner.Held().Where(h => h.TaskId == "b")).ShouldBe("""[{"task_id":"b"}]""");

        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"a","broadcast":false,"attempt":3}"""));
        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"b","broadcast":false}"""));
        await NextResultAsync();
        await NextResultAsync();
        while (runner.RunningCount > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        runner.Held().ShouldBeEmpty();
    }

    /// <summary>
    /// A stopped run of dispatch 1 still unwinding while the start of dispatch 2 (the task dispatched back here) waits
    /// for it: the report names dispatch 2, the run the task waits for. Before, it named whichever it read last, the
    /// unwinding run's dispatch 1, and the manager (which takes a run of an earlier dispatch as lacking) sent the start
    /// again, and after three such reports dispatched the task away from a proplet about to run it.
    /// </summary>
    [Fact]
    public async Task GivenAStoppedRunUnwindingAndALaterDispatchWaitingForIt_WhenAskedWhatItHolds_ThenTheLaterDispatchIsReported()
    {
        var runtime = new SlowUnwindRuntime();
        await using var runner = new TaskRunner(_settings with { MaxConcurrentTasks = 2 }, runtime, new BinaryFetcher(_settings, _chunks, _published, _http), _published, null, NullLogger<TaskRunner>.Instance);
        var spin = Convert.ToBase64String(Modules.Spin);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "back", name = "main", file = spin, attempt = 1, dispatch = 1 }));
        await runtime.Began.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"back","broadcast":false,"attempt":1,"dispatch":1}"""));
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "back", name = "main", file = spin, attempt = 1, dispatch = 2 }));

        runner.Held().ShouldBe([new HeldTask("back", 1, 2)]);
        runtime.Release();
    }

    /// <summary>
    /// A daemon's "started" result waits while the broker is unreachable (held here until released); its workload runs
    /// meanwhile (it waited for the publish and did not run for the whole outage), and the result still comes, before the
    /// end of its run (it returned meanwhile).
    /// </summary>
    [Fact]
    public async Task GivenADaemonWhoseStartedResultWaitsForTheBroker_WhenStarted_ThenItsWorkloadRunsMeanwhile()
    {
        var publisher = new HeldResultsPublisher(_published);
        var runtime = new RunWatchingRuntime(_runtime);
        var fetcher = new BinaryFetcher(_settings, _chunks, publisher, _http);
        await using var runner = new TaskRunner(_settings, runtime, fetcher, publisher, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "held", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" }, daemon = true }));

        var ran = await runtime.Ran.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        ran.Results.ShouldBe("3");
        _published.TryNext(out var early).ShouldBeFalse(early.Payload.ToString());

        publisher.Release();
        var started = await NextResultAsync();
        (started.GetProperty("task_id").GetString(), started.GetProperty("results").GetString()).ShouldBe(("held", ""));
        started.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null);
        var ended = await NextResultAsync();
        (ended.GetProperty("task_id").GetString(), ended.GetProperty("results").GetString(), ended.GetProperty("running").GetBoolean()).ShouldBe(("held", "3", false));
        while (runner.RunningCount > 0)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        _published.TryNext(out var extra).ShouldBeFalse(extra.Payload.ToString());
    }

    /// <summary>
    /// The proplet shuts down (SIGTERM) while a task's run has ended and its result waits for the broker (its ack, its
    /// turn): the result still goes out once the broker takes it, within the shutdown's drain budget. Cancelled with the
    /// runner's lifetime, it was dropped, the proplet went offline and the manager ran the finished task again.
    /// </summary>
    [Fact]
    public async Task GivenAFinishedTasksResultWaitingForTheBroker_WhenTheRunnerShutsDown_ThenTheResultStillGoesOut()
    {
        var publisher = new HeldResultsPublisher(_published);
        var fetcher = new BinaryFetcher(_settings, _chunks, publisher, _http);
        await using var runner = new TaskRunner(_settings, _runtime, fetcher, publisher, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "done", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" } }));
        await publisher.Holding.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        var disposing = runner.DisposeAsync().AsTask();
        await Task.Delay(100, TestContext.Current.CancellationToken); // the shutdown has begun while the result waits
        publisher.Release();
        await disposing;

        var result = await NextResultAsync();
        (result.GetProperty("task_id").GetString(), result.GetProperty("results").GetString()).ShouldBe(("done", "3"));
        result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null);
    }

    /// <summary>
    /// The proplet shuts down as a task's run ends with success (the shutdown's abort finds the task still holding its id,
    /// between its run and its result): the run finished its work, so its result is published. Taken for ended by the
    /// shutdown (the abort's reason was set), it was dropped and the manager ran the finished task again.
    /// </summary>
    [Fact]
    public async Task GivenARunEndingWithSuccessAsTheShutdownComes_WhenTheRunnerShutsDown_ThenItsResultIsPublished()
    {
        var runtime = new SucceedsWhenAbortedRuntime();
        await using var runner = new TaskRunner(_settings, runtime, new BinaryFetcher(_settings, _chunks, _published, _http), _published, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "finishing", name = "main", file = Modules.AdditionBase64, inputs = new[] { "1", "2" } }));
        await runtime.Began.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        await runner.DisposeAsync();

        var result = await NextResultAsync();
        (result.GetProperty("task_id").GetString(), result.GetProperty("results").GetString()).ShouldBe(("finishing", "done"));
        result.GetProperty("error").ValueKind.ShouldBe(JsonValueKind.Null);
    }

    /// <summary>
    /// A stop that comes as the binary arrives (here: with the image's last chunk) ends the task before it runs: the
    /// runtime is never called, and a daemon gets the stopped result, as for a stop while it waited for its binary.
    /// Before, nothing looked at the stop between the fetch and the run: the daemon started, and its "started" success
    /// went out after its stop.
    /// </summary>
    [Fact]
    public async Task GivenADaemonStoppedAsItsBinaryArrives_WhenTheFetchEnds_ThenItNeverRuns_AndItsResultIsTheStoppedOne()
    {
        var runtime = new RunWatchingRuntime(_runtime);
        var publisher = new RegistryAnsweringPublisher(_published);
        await using var runner = new TaskRunner(_settings, runtime, new BinaryFetcher(_settings, _chunks, publisher, _http), publisher, null, NullLogger<TaskRunner>.Instance);
        var image = Convert.ToBase64String(Modules.Sleeps(TimeSpan.FromMilliseconds(50), forever: true));
        publisher.Answer = () =>
        {
            runner.HandleStop("""{"id":"late","broadcast":false}"""u8.ToArray());
            _chunks.Add(new ChunkMessage("registry.local/sleeper:v1", 0, 1, image)).ShouldBeNull();
        };

        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "late", name = "_start", image_url = "registry.local/sleeper:v1", daemon = true }));

        (await NextResultAsync()).GetProperty("error").GetString().ShouldBe("Task late was stopped before completion");
        await runner.DisposeAsync();
        runtime.Began.Task.IsCompleted.ShouldBeFalse();
        while (_published.TryNext(out var other))
        {
            other.Path.ShouldNotBe(Topics.Results, other.Payload.ToString());
        }
    }

    /// <summary>
    /// Running out of memory in a task's pipeline (here: its run, and a latent task's compile) fails that task alone:
    /// an "internal proplet error" result, its id let go of (a start of it runs again), the proplet going on. Before,
    /// the exception went past every handler: no result, and the id held for ever, later starts dropped as duplicates.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GivenATaskThatRunsOutOfMemory_WhenItFails_ThenItsResultSaysSo_AndItsIdIsFree(bool latent)
    {
        await using var runner = new TaskRunner(_settings, new OutOfMemoryRuntime(), new BinaryFetcher(_settings, _chunks, _published, _http), _published, null, NullLogger<TaskRunner>.Instance);
        var start = JsonSerializer.SerializeToUtf8Bytes(new { id = "oom", name = "main", file = Modules.AdditionBase64, latent });

        runner.HandleStart(start);
        (await NextResultAsync()).GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith("internal proplet error: Array dimensions exceeded");
        runner.HandleStart(start);
        (await NextResultAsync()).GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith("internal proplet error: Array dimensions exceeded");

        runner.Held().ShouldBeEmpty();
        runner.Started.ShouldBe(2);
    }

    /// <summary>
    /// A stopped guest whose thread lives on (blocked in a preview 2 <c>wasi:io/poll</c> wait, or compiling): its stopped
    /// result goes out after the grace period, but its slot is given back only when its thread has returned, so the task
    /// waiting for the only slot starts after that. Before, the slot was freed with the result and the next guest ran
    /// beside the stopped one: repeated, more guests than PROPLET_MAX_CONCURRENT_TASKS, and the wasm pool exhausted.
    /// </summary>
    [Fact]
    public async Task GivenAStoppedGuestWhoseThreadLivesOn_WhenAnotherTaskWaitsForTheOnlySlot_ThenItStartsOnlyOnceThatThreadHasReturned()
    {
        var ct = TestContext.Current.CancellationToken;
        using var http = new HttpClient();
        var runtime = new LingeringGuestRuntime();
        await using var runner = new TaskRunner(_settings, runtime, new BinaryFetcher(_settings, _chunks, _published, http), _published, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "stuck", name = "main", file = Modules.AdditionBase64 }));
        await runtime.StuckBegan.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "next", name = "main", file = Modules.AdditionBase64 }));

        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"stuck"}"""));
        (await NextResultAsync()).GetProperty("task_id").GetString().ShouldBe("stuck");
        await Task.Delay(300, ct); // room for a slot freed with the result to be taken (the order below then fails)
        runtime.ReturnStuckGuest();

        (await NextResultAsync()).GetProperty("task_id").GetString().ShouldBe("next");
        runtime.Events.ShouldBe(["stuck began", "stuck returned", "next began"]);
    }

    /// <summary>
    /// A daemon stopped while its "started" result is on its way (the broker slow or away): that result may reach the
    /// manager after the stop, so the run's end follows it (<c>"running":false</c>). Before, nothing followed, and the
    /// manager could take the stopped daemon for running.
    /// </summary>
    [Fact]
    public async Task GivenADaemonStoppedWhileItsStartedResultIsHeld_WhenReleased_ThenItsEndFollows()
    {
        using var http = new HttpClient();
        var publisher = new HeldResultsPublisher(_published);
        await using var runner = new TaskRunner(_settings, _runtime, new BinaryFetcher(_settings, _chunks, publisher, http), publisher, null, NullLogger<TaskRunner>.Instance);
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "late", name = "main", file = Convert.ToBase64String(Modules.Spin), daemon = true }));
        await publisher.Holding.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        runner.HandleStop(Encoding.UTF8.GetBytes("""{"id":"late"}"""));
        publisher.Release();

        var started = await NextResultAsync();
        started.GetProperty("running").GetBoolean().ShouldBeTrue();
        var end = await NextResultAsync();
        end.GetProperty("task_id").GetString().ShouldBe("late");
        end.GetProperty("running").GetBoolean().ShouldBeFalse();
        end.GetProperty("error").GetString().ShouldBe("Task late was stopped before completion");
    }

    /// <summary>
    /// A run that outlasts shutdown's drain still ends cleanly when it finally returns: it gives its slot back and lets go
    /// of its id. Before, the slots were disposed after the drain, its release threw, and the task held its id.
    /// </summary>
    [Fact]
    public async Task GivenARunOutlastingTheShutdownDrain_WhenItEnds_ThenItLetsGoOfItsIdWithoutError()
    {
        var ct = TestContext.Current.CancellationToken;
        using var http = new HttpClient();
        var runtime = new SlowUnwindRuntime();
        var runner = new TaskRunner(_settings, runtime, new BinaryFetcher(_settings, _chunks, _published, http), _published, null, NullLogger<TaskRunner>.Instance)
        {
            DrainBudget = TimeSpan.Zero,
        };
        runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "lasting", name = "main", file = Modules.AdditionBase64 }));
        await runtime.Began.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        await runner.DisposeAsync();

        runtime.Release();

        for (var i = 0; i < 600 && runner.RunningCount > 0; i++)
        {
            await Task.Delay(50, ct);
        }

        runner.RunningCount.ShouldBe(0);
    }

    /// <summary>Runs "stuck" until it is stopped, then reports it stopped (as InProcessRuntime does after its grace)
    /// while its guest thread goes on until <see cref="ReturnStuckGuest"/>; runs anything else at once.</summary>
    private sealed class LingeringGuestRuntime : IWasmRuntime
    {
        private readonly TaskCompletionSource _return = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource StuckBegan { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public System.Collections.Concurrent.ConcurrentQueue<string> Events { get; } = new();

        public string Name => "fake";

        public void ReturnStuckGuest() => _return.TrySetResult();

        public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
        {
            Events.Enqueue($"{task.Id} began");
            if (task.Id != "stuck")
            {
                return TaskOutcome.Success("ran");
            }

            task.RunsGuest(GuestAsync());
            StuckBegan.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, task.Aborted).ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return TaskOutcome.Failure($"Task {task.Id} was stopped before completion");
        }

        private async Task GuestAsync()
        {
            await _return.Task;
            Events.Enqueue("stuck returned");
        }

        public bool ServesHttpProxy(byte[] binary) => false;

        public LatentPreparation Prepare(RunningTask task, byte[] binary) => throw new NotSupportedException();

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>A runtime that runs out of memory whatever it is asked to do: it asks for an array over .NET's largest
    /// (OutOfMemoryException, "Array dimensions exceeded supported range", nothing allocated).</summary>
    private sealed class OutOfMemoryRuntime : IWasmRuntime
    {
        public string Name => "fake";

        public Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken) =>
            Task.FromResult(TaskOutcome.Success(TooLarge().Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));

        public bool ServesHttpProxy(byte[] binary) => false;

        public LatentPreparation Prepare(RunningTask task, byte[] binary) => throw new InvalidOperationException($"allocated {TooLarge().Length} bytes");

        private static byte[] TooLarge() => new byte[int.MaxValue];

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>Answers the proxy request for an image with <see cref="Answer"/> (before passing it on), as a proxy whose
    /// chunks come at once; passes everything else on.</summary>
    private sealed class RegistryAnsweringPublisher(InMemoryPublisher inner) : Propeller.Edge.Messaging.IPropletPublisher
    {
        public Action Answer { get; set; } = () => { };

        public Task PublishAsync(string path, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
        {
            if (path == Topics.RegistryRequest)
            {
                Answer();
            }

            return inner.PublishAsync(path, payload, cancellationToken);
        }
    }

    /// <summary>A runtime whose run ends with success just as the task is ended (its work was done as the abort came).</summary>
    private sealed class SucceedsWhenAbortedRuntime : IWasmRuntime
    {
        public TaskCompletionSource Began { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Name => "fake";

        public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
        {
            var ended = new TaskCompletionSource<TaskOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var registration = task.Aborted.Register(() => ended.TrySetResult(TaskOutcome.Success("done")));
            Began.TrySetResult();
            return await ended.Task;
        }

        public bool ServesHttpProxy(byte[] binary) => false;

        public LatentPreparation Prepare(RunningTask task, byte[] binary) => throw new NotSupportedException();

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>Runs until released, an abort or not (a stopped run that takes its time to unwind).</summary>
    private sealed class SlowUnwindRuntime : IWasmRuntime
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Began { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Name => "fake";

        public void Release() => _released.TrySetResult();

        public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
        {
            Began.TrySetResult();
            await _released.Task;
            return TaskOutcome.Success("done");
        }

        public bool ServesHttpProxy(byte[] binary) => false;

        public LatentPreparation Prepare(RunningTask task, byte[] binary) => throw new NotSupportedException();

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>Runs until aborted, then unwinds until released (a timed-out external runtime slow to die, a guest in its
    /// grace period), and reports the stop; a second run succeeds at once.</summary>
    private sealed class GatedUnwindRuntime : IWasmRuntime
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _runs;

        public TaskCompletionSource Began { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Aborted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource RanAgain { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Runs => Volatile.Read(ref _runs);

        public string Name => "fake";

        public void Release() => _released.TrySetResult();

        public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref _runs) > 1)
            {
                RanAgain.TrySetResult();
                return TaskOutcome.Success("again");
            }

            Began.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, task.Aborted).ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            Aborted.TrySetResult();
            await _released.Task;
            return InProcessRuntime.Stopped(task)!;
        }

        public bool ServesHttpProxy(byte[] binary) => false;

        public LatentPreparation Prepare(RunningTask task, byte[] binary) => throw new NotSupportedException();

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>Tells when an event of an id was first logged.</summary>
    private sealed class EventLogger : Microsoft.Extensions.Logging.ILogger<TaskRunner>
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<int, TaskCompletionSource> _events = new();

        public Task Logged(int eventId) => Event(eventId).Task;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Event(eventId.Id).TrySetResult();

        private TaskCompletionSource Event(int eventId) => _events.GetOrAdd(eventId, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
    }

    /// <summary>Holds results until released, as an unreachable broker holds a publish; passes everything else on.</summary>
    private sealed class HeldResultsPublisher(InMemoryPublisher inner) : Propeller.Edge.Messaging.IPropletPublisher
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Set when a result is first held.</summary>
        public TaskCompletionSource Holding { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Release() => _released.TrySetResult();

        public async Task PublishAsync(string path, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
        {
            if (path == Topics.Results)
            {
                Holding.TrySetResult();
                await _released.Task.WaitAsync(cancellationToken);
            }

            await inner.PublishAsync(path, payload, cancellationToken);
        }
    }

    /// <summary>The in-process runtime, telling when a run has begun, and when it has ended and how.</summary>
    private sealed class RunWatchingRuntime(InProcessRuntime inner) : IWasmRuntime
    {
        public TaskCompletionSource<TaskOutcome> Ran { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Set when the first run begins (it holds its slot then).</summary>
        public TaskCompletionSource Began { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Name => inner.Name;

        public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
        {
            Began.TrySetResult();
            var outcome = await inner.RunAsync(task, binary, cancellationToken);
            Ran.TrySetResult(outcome);
            return outcome;
        }

        public bool ServesHttpProxy(byte[] binary) => inner.ServesHttpProxy(binary);

        public LatentPreparation Prepare(RunningTask task, byte[] binary) => inner.Prepare(task, binary);

        public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) => inner.InvokeAsync(invocation, prepared, cancellationToken);
    }

    /// <summary>Passes everything on except task metrics, which fail with an error nobody planned for.</summary>
    private sealed class MetricsRefusingPublisher(InMemoryPublisher inner) : Propeller.Edge.Messaging.IPropletPublisher
    {
        public TaskCompletionSource Refused { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task PublishAsync(string path, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
        {
            if (path != Topics.TaskMetrics)
            {
                return inner.PublishAsync(path, payload, cancellationToken);
            }

            Refused.TrySetResult();
            throw new NotSupportedException("no metrics here");
        }
    }

    private void Start(object message) => _runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(message));

    private Task<JsonElement> NextResultAsync() => _published.NextAsync(Topics.Results, TestContext.Current.CancellationToken);
}
