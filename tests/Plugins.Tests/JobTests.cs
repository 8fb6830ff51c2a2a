using System.Text;
using Propeller.Application.Plugins;
using Propeller.Plugins.Jobs;
using Propeller.Plugins.Runtime;
using Propeller.Plugins.Tests.Support;

namespace Propeller.Plugins.Tests;

/// <summary>The plugin job bridge (seed 004) on the real PostgreSQL: enqueue from a plugin, limits, the worker, retries, drops.</summary>
public sealed class JobTests : IAsyncLifetime
{
    private const string Schema = "plugins_job_tests";
    private static readonly PluginTaskInfo Task = new() { Id = "t", Name = "n" };
    private static readonly PluginAuthContext Start = new("u", PluginAction.Start);
    private readonly PluginDir _dir = new();
    private readonly PluginJobOptions _options = new() { ConnectionString = TestDatabase.ConnectionString, Schema = Schema, RetryBaseDelay = TimeSpan.Zero, PollInterval = TimeSpan.FromMilliseconds(20), EnqueueTimeout = TimeSpan.FromSeconds(60) }; // CI's load must not turn an enqueue into an I/O error
    private PluginJobStore _store = null!;
    private PluginJobQueue _queue = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        await TestDatabase.ResetAsync(Schema);
        _store = new PluginJobStore(_options);
        await _store.MigrateAsync(Ct);
        await _store.MigrateAsync(Ct);
        _queue = new PluginJobQueue(_store, _options, TimeProvider.System);
    }

    /// <summary>
    /// authorize calls queue.enqueue("ping", {"n":1}, OPTS) and answers allow with the job id as the reason, or deny
    /// with the errno as four digits.
    /// </summary>
    private static string Enqueuer(string options = "", string extra = "", byte[]? payload = null, int payloadPtr = 3100, int? idPtr = null)
    {
        var opts = Encoding.UTF8.GetBytes(options);
        payload ??= Encoding.UTF8.GetBytes("""{"n":1}""");
        var ok = Encoding.UTF8.GetBytes("""{"allow":true,"reason":" """.TrimEnd());
        return Wat.Plugin(
            $$"""
            (data (i32.const 3000) "ping")
            (data (i32.const 3100) "{{Wat.Escape(payload)}}")
            (data (i32.const 3200) "{{Wat.Escape(opts)}}")
            (data (i32.const 4000) "{{Wat.Escape(ok)}}")
            (data (i32.const {{4000 + ok.Length + 36}}) "\"}")
            (data (i32.const 5000) "{\"allow\":false,\"reason\":\"0000\"}")
            (func (export "authorize") (param i32 i32) (result i64) (local $e i32)
              (local.set $e (call $enqueue (i32.const 3000) (i32.const 4) (i32.const {{payloadPtr}}) (i32.const {{payload.Length}}) (i32.const 3200) (i32.const {{opts.Length}}) (i32.const {{idPtr ?? 4000 + ok.Length}}) (i32.const 36)))
              (if (i32.eqz (local.get $e)) (then (return (i64.const {{Wat.Packed(4000, ok.Length + 38)}}))))
              (i32.store8 (i32.const 5025) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $e) (i32.const 1000)) (i32.const 10))))
              (i32.store8 (i32.const 5026) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $e) (i32.const 100)) (i32.const 10))))
              (i32.store8 (i32.const 5027) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $e) (i32.const 10)) (i32.const 10))))
              (i32.store8 (i32.const 5028) (i32.add (i32.const 48) (i32.rem_u (local.get $e) (i32.const 10))))
              (i64.const {{Wat.Packed(5000, 31)}}))
            {{extra}}
            """,
            imports: """(import "queue" "enqueue" (func $enqueue (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))""");
    }

    private const string Queue = """{"capabilities":["queue"]}""";

    private async Task<string> EnqueueAsync(string plugin = "p")
    {
        var outcome = await _dir.Gate(_queue).AuthorizeAsync(Start, Task, Ct);
        return outcome.Decisions.Single(d => d.Plugin == plugin).Reason!;
    }

    private string Hash(string plugin) => _dir.Catalog().Current.Find(plugin)!.Hash;

    private PluginJobWorker Worker() => new(_dir.Catalog(_queue), _store, _queue, _options, new ListLogger<PluginJobWorker>());

    /// <summary>Polls until a round starts no job; fails after 200 rounds (jobs that keep enqueueing jobs, or a worker
    /// that keeps starting the same one) instead of returning as if the queue were quiet.</summary>
    private static async Task RunUntilQuietAsync(PluginJobWorker worker)
    {
        const int Rounds = 200;
        for (var round = 0; round < Rounds; round++)
        {
            var started = await worker.PollOnceAsync(Ct);
            await worker.WhenIdleAsync();
            if (started == 0)
            {
                return;
            }
        }

        throw new ShouldAssertException($"the worker still started jobs after {Rounds} rounds");
    }

    [Fact]
    public async Task Enqueue_WithTheCapability_StoresAJobOnThePluginsQueue()
    {
        _dir.Add("p", Enqueuer(), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        var job = (await _store.GetAsync(id, Ct))!;
        job.Type.ShouldBe("plugin:p:ping");
        job.UserType.ShouldBe("ping");
        job.Payload.ShouldBe("""{"n":1}""");
        job.EnqueuedBy.ShouldBe("authorize");
        job.State.ShouldBe("pending");
        job.MaxRetry.ShouldBe(_options.DefaultMaxRetry);
        job.PluginHash.ShouldBe(_dir.Catalog().Current.Find("p")!.Hash);
        (await TestDatabase.ScalarAsync<string>($"select queue from {Schema}.plugin_jobs where id = $1", id)).ShouldBe("plugins");
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued"]);
        _dir.Catalog().Current.Find("p")!.Counters.JobsEnqueued.ShouldBe(1);
    }

    [Fact]
    public async Task Enqueue_WithoutTheCapability_IsEPERM()
    {
        _dir.Add("p", Enqueuer());
        (await EnqueueAsync()).ShouldBe("0063");
    }

    [Theory]
    [InlineData("""{"queue":"default"}""", "0028")]
    [InlineData("""{"delay":-1}""", "0028")]
    [InlineData("[1]", "0028")]
    [InlineData("{bad", "0028")]
    [InlineData("""{"idempotency_key":"\ud800"}""", "0028")]
    [InlineData("""{"\udc00":1}""", "0028")]
    public async Task Enqueue_OptionsOutsideTheWhitelist_AreEINVAL(string options, string errno)
    {
        _dir.Add("p", Enqueuer(options), Queue);
        (await EnqueueAsync()).ShouldBe(errno);
    }

    /// <summary>An idempotency_key with U+0000 is refused as EINVAL and nothing is stored. Before, it passed the options
    /// check, PostgreSQL refused the insert (a text column cannot hold it), and the plugin got EIO.</summary>
    [Fact]
    public async Task Enqueue_AnIdempotencyKeyWithANul_IsEINVAL_AndNothingIsStored()
    {
        _dir.Add("p", Enqueuer("""{"idempotency_key":"a\u0000b"}"""), Queue);
        (await EnqueueAsync()).ShouldBe("0028");
        (await TestDatabase.ScalarAsync<long>($"select count(*) from {Schema}.plugin_jobs")).ShouldBe(0);
    }

    [Theory]
    [InlineData("""{"n":"\ud800"}""")]
    [InlineData("""{"\ud800":1}""")]
    [InlineData("""[1] [2]""")]
    public async Task Enqueue_APayloadThatIsNotOneDecodableJsonValue_IsEINVAL(string payload)
    {
        _dir.Add("p", Enqueuer(payload: Encoding.UTF8.GetBytes(payload)), Queue);
        (await EnqueueAsync()).ShouldBe("0028");
    }

    [Fact]
    public async Task Enqueue_APayloadWithInvalidUtf8_IsEINVAL()
    {
        _dir.Add("p", Enqueuer(payload: [.. "{\"n\":\""u8, 0xff, .. "\"}"u8]), Queue);
        (await EnqueueAsync()).ShouldBe("0028");
    }

    /// <summary>An empty buffer may point anywhere (C's NULL, 0): an empty payload outside memory is a null payload. Before,
    /// slicing it threw in the host call and the hook trapped.</summary>
    [Fact]
    public async Task Enqueue_AnEmptyPayloadPointingOutsideMemory_IsANullPayload()
    {
        _dir.Add("p", Enqueuer(payload: [], payloadPtr: -1), Queue);
        var job = (await _store.GetAsync(Guid.Parse(await EnqueueAsync()), Ct))!;
        job.Payload.ShouldBeNull();
    }

    /// <summary>An id buffer outside memory is EFAULT and nothing is enqueued. Before, the job was stored and success
    /// returned, its id never written: a job the plugin could not know of.</summary>
    [Fact]
    public async Task Enqueue_AnIdBufferOutsideMemory_IsEFAULT_AndNothingIsEnqueued()
    {
        _dir.Add("p", Enqueuer(idPtr: -100), Queue);
        (await EnqueueAsync()).ShouldBe("0021");
        (await TestDatabase.ScalarAsync<long>($"select count(*) from {Schema}.plugin_jobs")).ShouldBe(0);
    }

    [Fact]
    public async Task Enqueue_MaxRetryIsCapped_IdempotencyKeyReturnsTheSameJob()
    {
        _dir.Add("p", Enqueuer("""{"max_retry":1000,"idempotency_key":"k1","delay":0}"""), Queue);
        var first = await EnqueueAsync();
        var second = await EnqueueAsync();
        second.ShouldBe(first);
        (await _store.GetAsync(Guid.Parse(first), Ct))!.MaxRetry.ShouldBe(_options.MaxRetryCap);
    }

    [Fact]
    public async Task Enqueue_UniqueFor_RefusesADuplicateWithEEXIST()
    {
        _dir.Add("p", Enqueuer("""{"unique_for":60}"""), Queue);
        Guid.TryParse(await EnqueueAsync(), out _).ShouldBeTrue();
        (await EnqueueAsync()).ShouldBe("0020");
    }

    /// <summary>
    /// An enqueue keeps to what is left of its hook's time: with the unique_for lock held by another session, an
    /// authorize hook limited to 1 s ends in about a second (EIO or its timeout), and nothing is stored. Before, the lock
    /// waited the whole enqueue timeout (60 s here) on the guest thread, where the hook's time limit cannot reach.
    /// </summary>
    [Fact]
    public async Task GivenTheUniqueForLockHeldElsewhere_WhenAHookEnqueues_ThenItGivesUpWithinTheHooksTime()
    {
        _dir.Add("p", Enqueuer("""{"unique_for":60}"""), """{"capabilities":["queue"],"limits":{"timeout_ms":1000}}""");
        var uniqueKey = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes("plugin:p:ping\n{\"n\":1}")));
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(TestDatabase.ConnectionString);
        await using var holder = await dataSource.OpenConnectionAsync(Ct);
        await using var holding = await holder.BeginTransactionAsync(Ct);
        await using (var take = new Npgsql.NpgsqlCommand("select pg_advisory_xact_lock(hashtext($1))", holder, holding))
        {
            take.Parameters.Add(new Npgsql.NpgsqlParameter { Value = "p/" + uniqueKey });
            await take.ExecuteNonQueryAsync(Ct);
        }

        // Bounded well below the 60 s the enqueue waited before: it must end with its hook's time, not the lock's.
        var outcome = await _dir.Gate(_queue).AuthorizeAsync(Start, Task, Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(20), Ct);

        outcome.Allowed.ShouldBeFalse();
        outcome.Reason!.ShouldMatch("0029|timed out");
        (await TestDatabase.ScalarAsync<long>($"select count(*) from {Schema}.plugin_jobs")).ShouldBe(0);
    }

    /// <summary>
    /// An enqueue made after its hook's time ran out (before the next epoch tick stops the guest) is EIO at once and stores
    /// nothing; a negative time left was taken as "no limit" and given the whole enqueue timeout.
    /// </summary>
    [Fact]
    public async Task GivenAHookPastItsTime_WhenItEnqueues_ThenItIsEioAndNothingIsStored()
    {
        _dir.Add("p", Enqueuer(), Queue);
        var plugin = _dir.Catalog(_queue).Current.Find("p")!;

        var errno = _queue.Enqueue(plugin, "authorize", "ping", """{"n":1}"""u8, "{}"u8, TimeSpan.FromMilliseconds(-5), Ct, out _);

        errno.ShouldBe(PluginErrno.IO);
        (await TestDatabase.ScalarAsync<long>($"select count(*) from {Schema}.plugin_jobs")).ShouldBe(0);
    }

    /// <summary>A repeated idempotency key returns the first job's id, unique_for or not (a retried hook repeating its
    /// enqueue). Before, the unique_for check came first and the repeat got EEXIST.</summary>
    [Fact]
    public async Task Enqueue_ARepeatedIdempotencyKeyWithUniqueFor_ReturnsTheFirstJob()
    {
        _dir.Add("p", Enqueuer("""{"unique_for":60,"idempotency_key":"k1"}"""), Queue);
        var first = await EnqueueAsync();
        Guid.TryParse(first, out _).ShouldBeTrue();
        (await EnqueueAsync()).ShouldBe(first);
    }

    [Fact]
    public async Task Enqueue_RateLimit_IsERATELIMIT()
    {
        _dir.Add("p", Enqueuer(), """{"capabilities":["queue"],"queue":{"rate_per_minute":3}}""");
        for (var i = 0; i < 3; i++)
        {
            Guid.TryParse(await EnqueueAsync(), out _).ShouldBeTrue();
        }

        (await EnqueueAsync()).ShouldBe("1001");
        _dir.Catalog().Current.Find("p")!.Counters.JobsRejected.ShouldBe(1);
    }

    /// <summary>
    /// A repeated idempotency_key returns the first job's id without spending a token: with rate_per_minute 1 the second
    /// enqueue of key k got ERATELIMIT, because the rate limit ran before the insert looked the key up.
    /// </summary>
    [Fact]
    public async Task GivenARateOfOnePerMinute_WhenTheSameIdempotencyKeyIsEnqueuedTwice_ThenTheSecondReturnsTheFirstJob()
    {
        _dir.Add("p", Enqueuer("""{"idempotency_key":"k"}"""), """{"capabilities":["queue"],"queue":{"rate_per_minute":1}}""");
        var first = await EnqueueAsync();
        Guid.TryParse(first, out _).ShouldBeTrue();

        (await EnqueueAsync()).ShouldBe(first);
        _dir.Catalog().Current.Find("p")!.Counters.JobsRejected.ShouldBe(0);
        (await TestDatabase.ScalarAsync<long>($"select count(*) from {Schema}.plugin_jobs")).ShouldBe(1);
    }

    /// <summary>An enqueue that fails with EIO (here its hook's caller cancelled before the insert) stored nothing and
    /// spends no token: with rate_per_minute 1 the next enqueue is stored. Before, the EIO spent the only token.</summary>
    [Fact]
    public async Task GivenARateOfOnePerMinute_WhenAnEnqueueFailsWithEio_ThenTheNextOneIsStillStored()
    {
        _dir.Add("p", Enqueuer(), """{"capabilities":["queue"],"queue":{"rate_per_minute":1}}""");
        var plugin = _dir.Catalog(_queue).Current.Find("p")!;
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        _queue.Enqueue(plugin, "authorize", "ping", """{"n":1}"""u8, "{}"u8, Timeout.InfiniteTimeSpan, cancelled.Token, out _).ShouldBe(PluginErrno.IO);

        _queue.Enqueue(plugin, "authorize", "ping", """{"n":1}"""u8, "{}"u8, Timeout.InfiniteTimeSpan, Ct, out var id).ShouldBe(PluginErrno.Success);
        (await _store.GetAsync(id, Ct)).ShouldNotBeNull();
    }

    [Fact]
    public async Task Worker_RunsHandleJob_AndAuditsIt()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", """{"ok":true}""")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        await RunUntilQuietAsync(Worker());
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("done");
        job.Attempts.ShouldBe(1);
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "started", "succeeded"]);
        _dir.Catalog().Current.Find("p")!.Counters.JobsSucceeded.ShouldBe(1);
    }

    /// <summary>
    /// The database drops the worker's connections while handle_job runs (it sleeps 3 s): the first write of its outcome
    /// fails. The outcome is written again, so the job is done with one succeeded record, not left running until its
    /// lease ends (then run again, or with max_retry 0 failed as "the last attempt never finished").
    /// </summary>
    [Fact]
    public async Task Worker_ADatabaseErrorWhenRecordingTheOutcome_IsRetried_TheJobIsDoneOnce()
    {
        _dir.Add("p", Enqueuer("""{"max_retry":0}""", """
            (func (export "handle_job") (param i32 i32) (result i64)
              (i64.store (i32.const 8000) (i64.const 7))
              (i32.store8 (i32.const 8008) (i32.const 0))
              (i32.store (i32.const 8016) (i32.const 1))
              (i64.store (i32.const 8024) (i64.const 3000000000))
              (i64.store (i32.const 8032) (i64.const 0))
              (i32.store16 (i32.const 8040) (i32.const 0))
              (drop (call $poll (i32.const 8000) (i32.const 8100) (i32.const 1) (i32.const 8200)))
              (i64.const 0))
            """).Replace("(memory", """(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32))) (memory""", StringComparison.Ordinal), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        var application = $"job-finish-{Guid.NewGuid():N}";
        var options = new PluginJobOptions
        {
            ConnectionString = new Npgsql.NpgsqlConnectionStringBuilder(TestDatabase.ConnectionString) { ApplicationName = application }.ConnectionString,
            Schema = Schema,
            RetryBaseDelay = TimeSpan.Zero,
        };
        await using var store = new PluginJobStore(options);
        var worker = new PluginJobWorker(_dir.Catalog(_queue), store, _queue, options, new ListLogger<PluginJobWorker>());

        (await worker.PollOnceAsync(Ct)).ShouldBe(1);
        while (!(await _store.HistoryAsync(id, Ct)).Any(e => e.Event == "started"))
        {
            await System.Threading.Tasks.Task.Delay(20, Ct);
        }

        // The worker's pooled connections die while the plugin sleeps; the next write on each fails (57P01).
        (await TestDatabase.ScalarAsync<long>("select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1) t", application)).ShouldBeGreaterThan(0);
        await worker.WhenIdleAsync().WaitAsync(TimeSpan.FromSeconds(60), Ct);

        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("done");
        job.Attempts.ShouldBe(1);
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "started", "succeeded"]);
    }

    [Fact]
    public async Task Worker_RetriesWithBackoff_ThenFails()
    {
        _dir.Add("p", Enqueuer("""{"max_retry":2}""", Wat.Answer("handle_job", """{"error":"boom"}""")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        await RunUntilQuietAsync(Worker());
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("failed");
        job.Attempts.ShouldBe(3);
        job.LastError.ShouldBe("boom");
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event)
            .ShouldBe(["enqueued", "started", "failed", "started", "failed", "started", "dead"]);
    }

    [Fact]
    public async Task Worker_JobLimits_OutOfFuelIsAFailure()
    {
        _dir.Add(
            "p",
            Enqueuer("""{"max_retry":0}""", "(func (export \"handle_job\") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"),
            """{"capabilities":["queue"],"limits":{"job_fuel":100000}}""");
        var id = Guid.Parse(await EnqueueAsync());
        await RunUntilQuietAsync(Worker());
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("failed");
        job.LastError.ShouldBe("out of fuel (limit 100000)");
    }

    /// <summary>
    /// Jobs of a plugin this node no longer has (deleted) or has at another version wait for a node that has it; only
    /// once they have waited, due and unclaimed, for the orphan timeout are they dropped. Before, the first poll dropped
    /// both without retry.
    /// </summary>
    [Fact]
    public async Task GivenAPluginGoneOrAtAnotherVersion_WhenTheWorkerPolls_ThenItsJobsWait_UntilTheOrphanTimeoutDropsThem()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        _dir.Add("q", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var catalog = _dir.Catalog(_queue);
        var outcome = await _dir.Gate(_queue).AuthorizeAsync(Start, Task, Ct);
        var p = Guid.Parse(outcome.Decisions[0].Reason!);
        var q = Guid.Parse(outcome.Decisions[1].Reason!);

        File.Delete(Path.Combine(_dir.Path, "p.wasm"));
        _dir.Add("q", Enqueuer(extra: Wat.Answer("handle_job", """{"changed":true}""")), Queue);
        catalog.Reload(Ct);
        var worker = Worker();
        await RunUntilQuietAsync(worker);

        foreach (var id in (Guid[])[p, q])
        {
            var waiting = (await _store.GetAsync(id, Ct))!;
            waiting.State.ShouldBe("pending");
            waiting.Attempts.ShouldBe(0);
        }

        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set run_at = now() - interval '25 hours' where id = any($1)", new[] { p, q });
        await RunUntilQuietAsync(worker);

        foreach (var id in (Guid[])[p, q])
        {
            var dropped = (await _store.GetAsync(id, Ct))!;
            dropped.State.ShouldBe("dropped");
            dropped.LastError.ShouldBe(PluginJobStore.Orphaned);
            (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "dropped"]);
        }
    }

    /// <summary>
    /// A reload that drops a plugin for a moment (its .wasm moved away) does not cost its jobs: the worker polls while the
    /// plugin is missing, the file is restored and reloaded, and the job runs. Before, that poll dropped the job for good.
    /// (A half-copied .wasm no longer drops it at all: the reload keeps the version loaded before.)
    /// </summary>
    [Fact]
    public async Task GivenAPluginDroppedByAReloadForAMoment_WhenItComesBack_ThenItsJobStillRuns()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var catalog = _dir.Catalog(_queue);
        var id = Guid.Parse(await EnqueueAsync());
        var file = Path.Combine(_dir.Path, "p.wasm");
        var good = await File.ReadAllBytesAsync(file, Ct);

        File.Delete(file);
        catalog.Reload(Ct).Find("p").ShouldBeNull();
        var worker = Worker();
        await RunUntilQuietAsync(worker);
        (await _store.GetAsync(id, Ct))!.State.ShouldBe("pending");

        await File.WriteAllBytesAsync(file, good, Ct);
        catalog.Reload(Ct).Find("p").ShouldNotBeNull();
        await RunUntilQuietAsync(worker);

        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("done");
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "started", "succeeded"]);
    }

    /// <summary>
    /// A rolling upgrade: a node with the plugin at a new version leaves the old version's job alone (not claimed, not
    /// dropped), and the node still at the old version runs it. Before, the new node claimed and dropped it.
    /// </summary>
    [Fact]
    public async Task GivenTwoNodesAtDifferentVersions_WhenBothPoll_ThenTheJobRunsOnTheNodeWithItsVersion()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        using var upgraded = new PluginDir();
        upgraded.Add("p", Enqueuer(extra: Wat.Answer("handle_job", """{"v":2}""")), Queue);
        var newNode = new PluginJobWorker(upgraded.Catalog(_queue), _store, _queue, _options, new ListLogger<PluginJobWorker>());

        await RunUntilQuietAsync(newNode);
        var waiting = (await _store.GetAsync(id, Ct))!;
        waiting.State.ShouldBe("pending");
        waiting.Attempts.ShouldBe(0);

        await RunUntilQuietAsync(Worker());
        (await _store.GetAsync(id, Ct))!.State.ShouldBe("done");
    }

    [Fact]
    public async Task Worker_RespectsThePluginConcurrencyLimit()
    {
        _dir.Add(
            "p",
            Enqueuer(extra: """
                (func (export "handle_job") (param i32 i32) (result i64) (local $i i32)
                  (local.set $i (i32.const 20000000))
                  (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))
                  (i64.const 0))
                """),
            """{"capabilities":["queue","high_resource_jobs"],"limits":{"job_fuel":1000000000}}""");
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(Guid.Parse(await EnqueueAsync()));
        }

        var worker = Worker();
        (await worker.PollOnceAsync(Ct)).ShouldBe(2);
        await worker.WhenIdleAsync();
        await RunUntilQuietAsync(worker);
        worker.PeakInFlight.ShouldBe(2);
        foreach (var id in ids)
        {
            (await _store.GetAsync(id, Ct))!.State.ShouldBe("done");
        }
    }

    [Fact]
    public void ConcurrencyAboveTheHostCap_IsCapped_UnlessThePluginHasHighResourceJobs()
    {
        _dir.Add("greedy", Wat.Plugin(Wat.Answer("handle_job", "{}")), """{"capabilities":["queue"],"queue":{"concurrency":1000}}""")
            .Add("granted", Wat.Plugin(Wat.Answer("handle_job", "{}")), """{"capabilities":["queue","high_resource_jobs"],"queue":{"concurrency":1000}}""")
            .Add("modest", Wat.Plugin(Wat.Answer("handle_job", "{}")), """{"capabilities":["queue"],"queue":{"concurrency":3}}""")
            .Add("plain", Wat.Plugin(Wat.Answer("handle_job", "{}")));
        var set = _dir.Catalog(_queue).Current;
        var worker = Worker();

        _options.MaxConcurrency.ShouldBe(4);
        worker.Concurrency(set.Find("greedy")!).ShouldBe(4);
        worker.Concurrency(set.Find("granted")!).ShouldBe(1000);
        worker.Concurrency(set.Find("modest")!).ShouldBe(3);
        worker.Concurrency(set.Find("plain")!).ShouldBe(_options.DefaultConcurrency);
    }

    [Fact]
    public async Task Delay_KeepsTheJobWaiting_InactivePluginsJobsWait_UntilTheOrphanTimeout()
    {
        _dir.Add("p", Enqueuer("""{"delay":3600}""", Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        var worker = Worker();
        (await worker.PollOnceAsync(Ct)).ShouldBe(0);
        (await _store.GetAsync(id, Ct))!.State.ShouldBe("pending");

        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set run_at = now() where id = $1", id);
        await File.WriteAllTextAsync(Path.Combine(_dir.Path, "p.json"), """{"capabilities":["queue"],"active":false}""", Ct);
        _dir.Catalog().Reload(Ct);
        await RunUntilQuietAsync(worker);
        (await _store.GetAsync(id, Ct))!.State.ShouldBe("pending");

        // This node ran the plugin before it was deactivated: past the timeout since then too, the job is dropped.
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set run_at = now() - interval '25 hours' where id = $1", id);
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_job_runners set seen_at = now() - interval '25 hours'");
        await RunUntilQuietAsync(worker);
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("dropped");
        job.Attempts.ShouldBe(0);
    }

    /// <summary>
    /// A job due for longer than the orphan timeout is not dropped by a node without its plugin while a node that has the
    /// plugin at the job's version polls (a backlog: that node's concurrency is its own); only once no node has had it for
    /// the timeout. Before, the job's age alone counted, and a node without the plugin dropped the backlog.
    /// </summary>
    [Fact]
    public async Task GivenABacklogOlderThanTheOrphanTimeout_OnANodeWithThePlugin_WhenANodeWithoutItPolls_ThenTheJobsStay()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set run_at = now() - interval '25 hours' where id = $1", id);

        // The node with the plugin polls (its claims are elsewhere: only its record of what it can run matters here).
        (await _store.DropOrphansAsync([("p", Hash("p"))], TimeSpan.FromHours(24), Ct)).ShouldBe(0);
        (await _store.DropOrphansAsync([("other", "x")], TimeSpan.FromHours(24), Ct)).ShouldBe(0);
        (await _store.GetAsync(id, Ct))!.State.ShouldBe("pending");

        // The node with the plugin last polled 25 hours ago.
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_job_runners set seen_at = now() - interval '25 hours' where plugin = 'p'");
        (await _store.DropOrphansAsync([("other", "x")], TimeSpan.FromHours(24), Ct)).ShouldBe(1);
        (await _store.GetAsync(id, Ct))!.State.ShouldBe("dropped");
    }

    /// <summary>
    /// A node records what it can run on every poll (twice a second), but writes its row again only once a tenth of the
    /// orphan timeout old: before, every poll of every node rewrote the same rows (dead rows, WAL) for a time needed only
    /// to within the timeout.
    /// </summary>
    [Fact]
    public async Task GivenARunnerSeenJustNow_WhenItPollsAgain_ThenItsRowIsNotWrittenAgain_UntilATenthOfTheTimeoutHasPassed()
    {
        (await _store.DropOrphansAsync([("p", "h")], TimeSpan.FromHours(24), Ct)).ShouldBe(0);
        var first = await TestDatabase.ScalarAsync<string>($"select xmin::text from {Schema}.plugin_job_runners where plugin = 'p'");

        (await _store.DropOrphansAsync([("p", "h")], TimeSpan.FromHours(24), Ct)).ShouldBe(0);
        (await TestDatabase.ScalarAsync<string>($"select xmin::text from {Schema}.plugin_job_runners where plugin = 'p'")).ShouldBe(first);

        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_job_runners set seen_at = now() - interval '3 hours' where plugin = 'p'");
        (await _store.DropOrphansAsync([("p", "h")], TimeSpan.FromHours(24), Ct)).ShouldBe(0);
        (await TestDatabase.ScalarAsync<bool>($"select seen_at > now() - interval '1 minute' from {Schema}.plugin_job_runners where plugin = 'p'")).ShouldBe(true);
    }

    [Fact]
    public async Task AJobLeftRunningByADeadWorker_OfAPluginSinceRemoved_IsDroppedPastTheOrphanTimeout()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromHours(1), Ct)).Single().Id.ShouldBe(id);

        // Still leased: its worker may be running it, so it is left alone.
        (await _store.DropOrphansAsync([], TimeSpan.Zero, Ct)).ShouldBe(0);

        // Its lease just ran out: a node with the plugin may claim it yet.
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set locked_until = now() - interval '1 second' where id = $1", id);
        (await _store.DropOrphansAsync([("other", "x")], TimeSpan.FromHours(24), Ct)).ShouldBe(0);

        // Still runnable where its plugin is, at its version.
        (await _store.DropOrphansAsync([("p", Hash("p"))], TimeSpan.Zero, Ct)).ShouldBe(0);

        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set locked_until = now() - interval '25 hours' where id = $1", id);
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_job_runners set seen_at = now() - interval '25 hours'");
        (await _store.DropOrphansAsync([("other", "x")], TimeSpan.FromHours(24), Ct)).ShouldBe(1);
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("dropped");
        job.LastError.ShouldBe(PluginJobStore.Orphaned);
        (await _store.HistoryAsync(id, Ct)).Select(e => (e.Event, e.Attempt)).ShouldBe([("enqueued", 0), ("dropped", 1)]);
    }

    /// <summary>
    /// Ended jobs older than the retention are deleted with their history by the worker's poll (the tables grew for
    /// ever: ~86,000 jobs a day per plugin at the default rate); a job still waiting, one ended recently and one whose
    /// unique_for window is open are kept. One round deletes batch after batch until one comes back short (a single
    /// batch per interval fell behind a busy plugin): five old jobs, batches of two, all gone after one poll.
    /// </summary>
    [Fact]
    public async Task EndedJobsPastTheRetention_AreDeletedWithTheirHistory_OthersKept()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var olds = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            olds.Add(Guid.Parse(await EnqueueAsync()));
        }

        var recent = Guid.Parse(await EnqueueAsync());
        var unique = Guid.Parse(await EnqueueAsync());
        await RunUntilQuietAsync(Worker());
        var waiting = Guid.Parse(await EnqueueAsync());
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set updated_at = now() - interval '8 days' where id = any($1)", olds.Append(unique).Append(waiting).ToArray());
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set unique_until = now() + interval '1 hour' where id = $1", unique);

        _options.PruneBatch = 2;
        var worker = Worker();
        await worker.PollOnceAsync(Ct); // the first poll prunes; the waiting job is claimed, not pruned
        await worker.WhenIdleAsync();

        foreach (var old in olds)
        {
            (await _store.GetAsync(old, Ct)).ShouldBeNull();
            (await _store.HistoryAsync(old, Ct)).ShouldBeEmpty();
        }

        (await _store.GetAsync(recent, Ct))!.State.ShouldBe("done");
        (await _store.GetAsync(unique, Ct))!.State.ShouldBe("done");
        (await _store.GetAsync(waiting, Ct)).ShouldNotBeNull();
        (await _store.PruneAsync(TimeSpan.FromDays(7), 100, Ct)).ShouldBe(0);

        // The prune's filter has its index (a prune with nothing to delete read the whole table).
        (await TestDatabase.ScalarAsync<string>($"select indexdef from pg_indexes where schemaname = '{Schema}' and indexname = 'plugin_jobs_ended'"))
            .ShouldBe($"CREATE INDEX plugin_jobs_ended ON {Schema}.plugin_jobs USING btree (updated_at) WHERE (state = ANY (ARRAY['done'::text, 'failed'::text, 'dropped'::text]))");
    }

    [Fact]
    public async Task AJobWhoseWorkerDied_IsClaimedAgainWhenItsLeaseExpires()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromHours(1), Ct)).Single().Id.ShouldBe(id);
        (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromHours(1), Ct)).ShouldBeEmpty();
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set locked_until = now() - interval '1 second' where id = $1", id);
        await RunUntilQuietAsync(Worker());
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("done");
        job.Attempts.ShouldBe(2);
    }

    /// <summary>A claim whose lease ran out before its run started (the start's record retried against a slow database)
    /// and that was claimed again since does not start: before, the first worker ran the job anyway, at the same time as
    /// the second. The claim still the job's starts, with its lease renewed for the run.</summary>
    [Fact]
    public async Task AClaimLostBeforeItsRunStarts_DoesNotStart()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        var first = (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromSeconds(30), Ct)).Single();
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set locked_until = now() - interval '1 second' where id = $1", id);
        var second = (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromSeconds(30), Ct)).Single();

        (await _store.StartAsync(id, first.Attempts, TimeSpan.FromHours(1), Ct)).ShouldBeFalse();
        (await _store.StartAsync(id, second.Attempts, TimeSpan.FromHours(1), Ct)).ShouldBeTrue();

        (await _store.HistoryAsync(id, Ct)).Select(e => (e.Event, e.Attempt)).ShouldBe([("enqueued", 0), ("started", 2)]);
        (await TestDatabase.ScalarAsync<bool>($"select locked_until > now() + interval '50 minutes' from {Schema}.plugin_jobs where id = $1", id)).ShouldBeTrue();
    }

    /// <summary>A fresh instance's start function and the call share the call's fuel (here the job's): each of the two
    /// loops fits the job fuel, both do not. Before, the start function had the hook fuel of its own, and a call could use
    /// twice its budget (and time).</summary>
    [Fact]
    public async Task AJobsStartFunctionAndHandleJob_ShareTheJobFuel()
    {
        const string Loop = "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 700000))))";
        _dir.Add(
            "p",
            Enqueuer("""{"max_retry":0}""", $$"""
                (func $start {{Loop}})
                (start $start)
                (func (export "handle_job") (param i32 i32) (result i64) {{Loop}} (i64.const 0))
                """),
            """{"capabilities":["queue"],"limits":{"job_fuel":9000000}}""");
        var id = Guid.Parse(await EnqueueAsync());
        await RunUntilQuietAsync(Worker());
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("failed");
        job.LastError.ShouldBe("out of fuel (limit 9000000)");
    }

    [Fact]
    public async Task Worker_AnErrorThatDoesNotDecode_IsAMalformedFailure()
    {
        _dir.Add("p", Enqueuer("""{"max_retry":0}""", Wat.Answer("handle_job", """{"error":"\ud800"}""")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        await RunUntilQuietAsync(Worker());
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("failed");
        job.LastError!.ShouldStartWith("malformed JSON answer");
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "started", "dead"]);
    }

    [Fact]
    public async Task Worker_AnUnexpectedExceptionInTheRun_IsAFailedAttempt_NotAJobLeftRunning()
    {
        // A payload with a lone surrogate escape (enqueue refuses one; here it is put in the table) cannot be written into
        // the request: the run throws something no handler expects.
        _dir.Add("p", Enqueuer("""{"max_retry":1}""", Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        await TestDatabase.ScalarAsync<object>($$"""update {{Schema}}.plugin_jobs set payload = '{"n":"\ud800"}' where id = $1""", id);
        var log = new ListLogger<PluginJobWorker>();
        await RunUntilQuietAsync(new PluginJobWorker(_dir.Catalog(_queue), _store, _queue, _options, log));
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("failed");
        job.Attempts.ShouldBe(2);
        job.LastError!.ShouldStartWith("unexpected failure: InvalidOperationException");
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "started", "failed", "started", "dead"]);
        log.Lines.Count(l => l.Contains("failed unexpectedly", StringComparison.Ordinal)).ShouldBe(2);
    }

    [Fact]
    public async Task Claim_AJobWhoseLastAttemptNeverFinished_FailsInsteadOfRunningAgain()
    {
        _dir.Add("p", Enqueuer("""{"max_retry":0}""", Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromHours(1), Ct)).Single().Attempts.ShouldBe(1);
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set locked_until = now() - interval '1 second' where id = $1", id);
        (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromHours(1), Ct)).ShouldBeEmpty();
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("failed");
        job.Attempts.ShouldBe(1);
        job.LastError.ShouldBe(PluginJobStore.AttemptsSpent);
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "dead"]);
    }

    [Fact]
    public async Task Finish_OnlyFinishesTheClaimThatIsStillTheJobs()
    {
        _dir.Add("p", Enqueuer(extra: Wat.Answer("handle_job", "{}")), Queue);
        var id = Guid.Parse(await EnqueueAsync());
        (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromHours(1), Ct)).Single().Attempts.ShouldBe(1);
        await TestDatabase.ScalarAsync<object>($"update {Schema}.plugin_jobs set locked_until = now() - interval '1 second' where id = $1", id);
        (await _store.ClaimAsync("p", Hash("p"), 10, TimeSpan.FromHours(1), Ct)).Single().Attempts.ShouldBe(2);

        // The first worker ends late: its claim is gone, so neither its result nor a release changes the job.
        (await _store.FinishAsync(id, 1, "done", "succeeded", null, null, Ct)).ShouldBeFalse();
        await _store.ReleaseAsync(id, 1, Ct);
        var job = (await _store.GetAsync(id, Ct))!;
        job.State.ShouldBe("running");
        job.Attempts.ShouldBe(2);

        (await _store.FinishAsync(id, 2, "done", "succeeded", null, null, Ct)).ShouldBeTrue();
        (await _store.GetAsync(id, Ct))!.State.ShouldBe("done");
        (await _store.HistoryAsync(id, Ct)).Select(e => e.Event).ShouldBe(["enqueued", "succeeded"]);
    }

    [Fact]
    public void Backoff_DoublesUpToTheCap()
    {
        var options = new PluginJobOptions { ConnectionString = "x", RetryBaseDelay = TimeSpan.FromSeconds(1), MaxRetryDelay = TimeSpan.FromSeconds(5) };
        var worker = new PluginJobWorker(_dir.Catalog(), _store, _queue, options, new ListLogger<PluginJobWorker>());
        Enumerable.Range(1, 5).Select(worker.Backoff).ShouldBe([TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5)]);
    }

    [Fact]
    public async Task Enqueue_WithoutAJobStore_IsENOSYS()
    {
        _dir.Add("p", Enqueuer(), Queue);
        var outcome = await _dir.Gate().AuthorizeAsync(Start, Task, Ct);
        outcome.Decisions.Single().Reason.ShouldBe("0052");
    }

    public async ValueTask DisposeAsync()
    {
        _dir.Dispose();
        await _store.DisposeAsync();
    }
}
