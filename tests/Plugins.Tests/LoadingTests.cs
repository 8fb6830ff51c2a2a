using Propeller.Application.Plugins;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Runtime;
using Propeller.Plugins.Tests.Support;

namespace Propeller.Plugins.Tests;

public sealed class LoadingTests : IDisposable
{
    private readonly PluginDir _dir = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Load_LexicalOrder_WasmOnly_SkipsBrokenOnes()
    {
        _dir.Add("b", Wat.Plugin(""))
            .Add("a", Wat.Plugin(""))
            .Add("B-upper", Wat.Plugin(""))
            .Add("c-noalloc", Wat.Plugin("", alloc: false))
            .Add("d-nofree", Wat.Plugin("", free: false))
            .Add("e-badsig", Wat.Plugin("(func (export \"authorize\") (param i32 i32) (result i32) (i32.const 0))"))
            .Add("f-badmanifest", Wat.Plugin(""), "{ not json")
            .Add("g-unknown-import", Wat.Plugin("", imports: """(import "env" "nope" (func))"""));
        File.WriteAllBytes(Path.Combine(_dir.Path, "h-garbage.wasm"), [1, 2, 3]);
        File.WriteAllText(Path.Combine(_dir.Path, "readme.txt"), "not a plugin");
        Directory.CreateDirectory(Path.Combine(_dir.Path, "sub.wasm"));
        var set = _dir.Catalog().Current;
        set.All.Select(p => p.Name).ShouldBe(["B-upper", "a", "b"]);
        set.Skipped.Select(s => s.Plugin).ShouldBe(["c-noalloc", "d-nofree", "e-badsig", "f-badmanifest", "g-unknown-import", "h-garbage"]);
        set.Skipped[0].Error.ShouldContain("plugin_alloc");
        set.Skipped[5].Error.ShouldBe("not a WebAssembly binary: it starts with 01 02 03, not 00 61 73 6d (\\0asm)");
        _dir.Log.Lines.Count(l => l.StartsWith("Error:", StringComparison.Ordinal)).ShouldBe(6);
    }

    /// <summary>
    /// A bad entry is a skipped file, not an unusable directory (spec §7.1): a .wasm symlink loop beside a good plugin
    /// used to throw out of the enumeration (the manager would not start, a reload answered 500), and a dangling .wasm
    /// symlink vanished without a word. Both are listed as skipped with the reason; the good plugin loads.
    /// </summary>
    [Fact]
    public void GivenASymlinkLoopAndADanglingSymlink_WhenTheDirectoryIsLoaded_ThenTheyAreSkipped_AndTheGoodPluginLoads()
    {
        _dir.Add("good", Wat.Plugin(""));
        File.CreateSymbolicLink(Path.Combine(_dir.Path, "a.wasm"), Path.Combine(_dir.Path, "a.wasm"));
        File.CreateSymbolicLink(Path.Combine(_dir.Path, "dangling.wasm"), Path.Combine(_dir.Path, "missing.wasm"));

        var set = _dir.Catalog().Current;

        set.All.Select(p => p.Name).ShouldBe(["good"]);
        set.Skipped.Select(s => s.Plugin).ShouldBe(["a", "dangling"]);
        set.Skipped[0].Error.ShouldNotBeNullOrWhiteSpace();
        set.Skipped[1].Error.ShouldContain("missing.wasm");
        _dir.Log.Lines.Count(l => l.StartsWith("Error: Plugin", StringComparison.Ordinal) && l.Contains("skipped", StringComparison.Ordinal)).ShouldBe(2);
    }

    [Fact]
    public void MissingDirectory_IsAWarning_NotADirectory_IsAnError()
    {
        using var missing = new PluginCatalog(new PluginHostOptions { Directory = Path.Combine(_dir.Path, "nope") }, new ListLogger<PluginCatalog>(), _dir.Metrics);
        missing.Reload(Ct).All.ShouldBeEmpty();
        var file = Path.Combine(_dir.Path, "file");
        File.WriteAllText(file, "x");
        var log = new ListLogger<PluginCatalog>();
        using var notDir = new PluginCatalog(new PluginHostOptions { Directory = file }, log, _dir.Metrics);
        Should.Throw<PluginDirectoryException>(() => notDir.Reload(Ct));
        log.Lines.ShouldContain(l => l.StartsWith("Error:", StringComparison.Ordinal) && l.Contains("Plugins not reloaded", StringComparison.Ordinal), "the operator's log says it, not only the HTTP answer");
        using var empty = new PluginCatalog(new PluginHostOptions { Directory = "" }, new ListLogger<PluginCatalog>(), _dir.Metrics);
        empty.Reload(Ct).All.ShouldBeEmpty();
    }

    [Fact]
    public void Manifest_SetsLimitsAndCapabilities_DefaultsOtherwise()
    {
        _dir.Add("m", Wat.Plugin(""), """{"version":"1.2.3","limits":{"fuel":5,"memory_mb":8,"timeout_ms":250,"job_timeout_ms":1000},"capabilities":["queue"],"queue":{"rate_per_minute":5,"concurrency":1,"max_retry":2}}""")
            .Add("plain", Wat.Plugin(""))
            .Add("badcap", Wat.Plugin(""), """{"capabilities":["network"]}""");
        var set = _dir.Catalog().Current;
        var m = set.Find("m")!;
        m.Manifest.Version.ShouldBe("1.2.3");
        m.Limits.Fuel.ShouldBe(5);
        m.Limits.MemoryMb.ShouldBe(8);
        m.Limits.Timeout.ShouldBe(TimeSpan.FromMilliseconds(250));
        m.Limits.JobFuel.ShouldBe(10_000_000);
        m.Limits.JobTimeout.ShouldBe(TimeSpan.FromSeconds(1));
        m.Manifest.Has("queue").ShouldBeTrue();
        m.Manifest.RatePerMinute.ShouldBe(5);
        var plain = set.Find("plain")!;
        plain.Limits.ShouldBe(PluginLimits.Default);
        plain.Hash.Length.ShouldBe(64);
        set.Skipped.Single().Error.ShouldContain("unknown capability");
    }

    [Fact]
    public void JobLimits_AboveTheDefaults_NeedHighResourceJobs()
    {
        const string Limits = "\"limits\":{\"job_fuel\":99000000000,\"job_memory_mb\":512,\"job_timeout_ms\":600000,\"fuel\":99}";
        _dir.Add("capped", Wat.Plugin(""), "{" + Limits + "}")
            .Add("granted", Wat.Plugin(""), """{"capabilities":["high_resource_jobs"],""" + Limits + "}");
        var set = _dir.Catalog().Current;
        set.Find("capped")!.Limits.ShouldBe(PluginLimits.Default with { Fuel = 99 });
        var granted = set.Find("granted")!.Limits;
        granted.JobFuel.ShouldBe(99_000_000_000);
        granted.JobMemoryMb.ShouldBe(512);
        granted.JobTimeout.ShouldBe(TimeSpan.FromMinutes(10));
    }

    [Theory]
    [InlineData("""{"limits":{"timeout_ms":1000000000000000}}""", "limits.timeout_ms must be between 1 and 86400000, got 1000000000000000")]
    [InlineData("""{"limits":{"job_timeout_ms":86400001}}""", "limits.job_timeout_ms must be between 1 and 86400000")]
    [InlineData("""{"limits":{"memory_mb":2147483648}}""", "limits.memory_mb must be between 1 and 2047, got 2147483648")]
    [InlineData("""{"limits":{"job_memory_mb":2147483648},"capabilities":["high_resource_jobs"]}""", "limits.job_memory_mb must be between 1 and 2047")]
    [InlineData("""{"limits":{"job_memory_mb":4294967360}}""", "limits.job_memory_mb must be between 1 and 2047")]
    [InlineData("""{"limits":{"fuel":0}}""", "limits.fuel must be between 1 and")]
    [InlineData("""{"queue":{"concurrency":4294967296}}""", "queue.concurrency must be between 1 and 2147483647, got 4294967296")]
    [InlineData("""{"queue":{"rate_per_minute":4294967296}}""", "queue.rate_per_minute must be between 1 and 2147483647")]
    [InlineData("""{"queue":{"max_retry":4294967296}}""", "queue.max_retry must be between 0 and 2147483647")]
    [InlineData("""{"limits":{"fuel":100000000000000000000}}""", "manifest big.json:")]
    public void Manifest_NumbersOutOfRange_SkipThePluginWithTheFieldNamed(string manifest, string error)
    {
        _dir.Add("big", Wat.Plugin(""), manifest).Add("ok", Wat.Plugin(""));
        var set = _dir.Catalog().Current;
        set.All.Select(p => p.Name).ShouldBe(["ok"]);
        set.Skipped.Single().Plugin.ShouldBe("big");
        set.Skipped.Single().Error.ShouldContain(error);
        _dir.Log.Lines.ShouldContain(l => l.StartsWith("Error:", StringComparison.Ordinal) && l.Contains(error, StringComparison.Ordinal));
    }

    /// <summary>
    /// Calls running when a reload swaps the set finish on the set they started with. The plugin's authorize blocks in a
    /// host call (queue.enqueue, answered by a sink the test holds) until all four calls are inside it, the reload swaps in
    /// a set that denies, and only then are the calls let go: each is allowed by the old plugin.
    /// </summary>
    [Fact]
    public async Task Reload_SwapsTheSet_WithoutDroppingCallsInFlight()
    {
        const int Calls = 4;
        _dir.Add(
            "slow",
            Wat.Plugin(
                """
                (data (i32.const 3000) "ping")
                (data (i32.const 30000) "{\"allow\":true}")
                (func (export "authorize") (param i32 i32) (result i64)
                  (drop (call $enqueue (i32.const 3000) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
                  (i64.const 128849018880014))
                """,
                imports: """(import "queue" "enqueue" (func $enqueue (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"""),
            """{"capabilities":["queue"],"limits":{"timeout_ms":60000}}""");
        using var sink = new BlockingSink(Calls);
        var catalog = _dir.Catalog(sink, o => o.MaxInstancesPerPlugin = Calls);
        var gate = _dir.Gate(sink);
        var context = new PluginAuthContext("u", PluginAction.Start);
        var task = new PluginTaskInfo { Id = "t", Name = "n" };
        var inFlight = Enumerable.Range(0, Calls).Select(_ => Task.Run(async () => await gate.AuthorizeAsync(context, task, Ct), Ct)).ToArray();
        await Task.Run(() => sink.Entered.Wait(Ct), Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);

        File.Delete(Path.Combine(_dir.Path, "slow.wasm"));
        _dir.Add("deny", Wat.Plugin(Wat.Answer("authorize", """{"allow":false,"reason":"new set"}""")));
        var next = catalog.Reload(Ct);
        next.All.Select(p => p.Name).ShouldBe(["deny"]);
        inFlight.ShouldAllBe(t => !t.IsCompleted);
        sink.Release.Set();

        foreach (var outcome in await Task.WhenAll(inFlight))
        {
            outcome.Allowed.ShouldBeTrue();
            outcome.Decisions.Single().Plugin.ShouldBe("slow");
        }

        (await gate.AuthorizeAsync(context, task, Ct)).Reason.ShouldBe("new set");
        catalog.Counters("slow").Failures.ShouldBe(0);
    }

    /// <summary>A job sink whose enqueue counts the calls that reached it and holds each until <see cref="Release"/>.</summary>
    private sealed class BlockingSink(int calls) : IPluginJobSink, IDisposable
    {
        public CountdownEvent Entered { get; } = new(calls);

        public ManualResetEventSlim Release { get; } = new();

        public int Enqueue(LoadedPlugin plugin, string? hook, string taskType, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> options, TimeSpan timeLeft, CancellationToken cancellationToken, out Guid jobId)
        {
            Entered.Signal();
            Release.Wait(cancellationToken);
            jobId = Guid.Empty;
            return PluginErrno.Success;
        }

        public void Dispose()
        {
            Entered.Dispose();
            Release.Dispose();
        }
    }

    public static TheoryData<string, string> BrokenOnReload => new()
    {
        { "truncated", "" },
        { "bad-manifest", "{ not json" },
    };

    /// <summary>
    /// A reload while a plugin's .wasm is half copied, or with a bad manifest, keeps the version loaded before: it still
    /// denies, the reload's answer lists the file under "kept" (with why and the hash of the version still running), and
    /// a warning names the file. Before, the file was skipped, the working version retired and the chain left empty, which
    /// allows everything.
    /// </summary>
    [Theory]
    [MemberData(nameof(BrokenOnReload))]
    public async Task GivenADenyAllPlugin_WhenItsFileIsBrokenAndTheDirectoryReloaded_ThenItsPreviousVersionStillDenies(string broken, string manifest)
    {
        _dir.Add("auth", Wat.Plugin(Wat.Answer("authorize", """{"allow":false,"reason":"deny all"}""")));
        var catalog = _dir.Catalog();
        var gate = _dir.Gate();
        var context = new PluginAuthContext("u", PluginAction.Start);
        var task = new PluginTaskInfo { Id = "t", Name = "n" };
        var hash = catalog.Current.Find("auth")!.Hash;
        var file = Path.Combine(_dir.Path, "auth.wasm");
        if (broken == "truncated")
        {
            var good = await File.ReadAllBytesAsync(file, Ct);
            await File.WriteAllBytesAsync(file, good[..(good.Length / 2)], Ct);
        }
        else
        {
            await File.WriteAllTextAsync(Path.Combine(_dir.Path, "auth.json"), manifest, Ct);
        }

        var next = catalog.Reload(Ct);

        var outcome = await gate.AuthorizeAsync(context, task, Ct);
        outcome.Allowed.ShouldBeFalse();
        outcome.Reason.ShouldBe("deny all");
        next.Find("auth")!.Hash.ShouldBe(hash);
        next.Skipped.ShouldBeEmpty();
        var kept = PluginEndpoints.Describe(catalog, next).Kept.ShouldHaveSingleItem();
        (kept.Name, kept.File, kept.Sha256).ShouldBe(("auth", "auth.wasm", hash));
        kept.Error.ShouldNotBeNullOrEmpty();
        _dir.Log.Lines.ShouldContain(l => l.StartsWith("Warning:", StringComparison.Ordinal) && l.Contains(file, StringComparison.Ordinal) && l.Contains("previous version", StringComparison.Ordinal));

        // The kept version is not retired: it still answers after another reload of the same broken file.
        (await gate.AuthorizeAsync(context, task, Ct)).Reason.ShouldBe("deny all");
        catalog.Reload(Ct).Kept.ShouldHaveSingleItem();
        (await gate.AuthorizeAsync(context, task, Ct)).Reason.ShouldBe("deny all");

        // Removed on purpose (the .wasm gone): dropped.
        File.Delete(file);
        catalog.Reload(Ct).All.ShouldBeEmpty();
    }

    public void Dispose() => _dir.Dispose();
}
