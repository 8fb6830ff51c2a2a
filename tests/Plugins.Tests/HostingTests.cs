using System.Diagnostics.Metrics;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Propeller.Application.Plugins;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Jobs;
using Propeller.Plugins.Runtime;
using Propeller.Plugins.Tests.Support;

namespace Propeller.Plugins.Tests;

/// <summary>The DI extension and the endpoints in a real host (Kestrel on loopback).</summary>
public sealed class HostingTests : IDisposable
{
    private readonly PluginDir _dir = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<(WebApplication App, HttpClient Client)> StartAsync(PluginHostOptions options, ILogger<PluginCatalog>? log = null)
    {
        var builder = WebApplication.CreateSlimBuilder(["--urls", "http://127.0.0.1:0"]);
        builder.Logging.ClearProviders();
        if (log is not null)
        {
            builder.Services.AddSingleton(log);
        }

        builder.Services.AddSingleton<IPluginGate>(AllowAllPluginGate.Instance);
        builder.Services.AddWasmPlugins(options);
        var app = builder.Build();
        app.MapPluginEndpoints();
        await app.StartAsync(Ct);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app, new HttpClient { BaseAddress = new Uri(address) });
    }

    [Fact]
    public async Task AddWasmPlugins_ReplacesTheGate_AndTheEndpointsListAndReload()
    {
        _dir.Add("a", Wat.Plugin(Wat.Answer("authorize", """{"allow":false,"reason":"nope"}""")), """{"version":"2.0","capabilities":["queue"]}""");
        await File.WriteAllBytesAsync(Path.Combine(_dir.Path, "broken.wasm"), [0, 1], Ct);
        var (app, client) = await StartAsync(new PluginHostOptions { Directory = _dir.Path });
        await using (app)
        {
            using (client)
            {
                var gate = app.Services.GetRequiredService<IPluginGate>();
                gate.ShouldBeOfType<WasmPluginGate>();
                (await gate.AuthorizeAsync(new("u", PluginAction.Create), new PluginTaskInfo { Id = "", Name = "n" }, Ct)).Reason.ShouldBe("nope");

                using var list = JsonDocument.Parse(await client.GetStringAsync("/plugins", Ct));
                var plugin = list.RootElement.GetProperty("plugins")[0];
                plugin.GetProperty("name").GetString().ShouldBe("a");
                plugin.GetProperty("file").GetString().ShouldBe("a.wasm");
                plugin.GetProperty("version").GetString().ShouldBe("2.0");
                plugin.GetProperty("sha256").GetString()!.Length.ShouldBe(64);
                plugin.GetProperty("hooks")[0].GetString().ShouldBe("authorize");
                plugin.GetProperty("limits").GetProperty("fuel").GetInt64().ShouldBe(10_000_000);
                plugin.GetProperty("limits").GetProperty("timeout_ms").GetInt64().ShouldBe(1000);
                plugin.GetProperty("capabilities")[0].GetString().ShouldBe("queue");
                plugin.GetProperty("counters").GetProperty("calls").GetInt64().ShouldBe(1);
                plugin.GetProperty("counters").GetProperty("denies").GetInt64().ShouldBe(1);
                list.RootElement.GetProperty("skipped")[0].GetProperty("name").GetString().ShouldBe("broken");

                _dir.Add("b", Wat.Plugin(""));
                using var reloaded = await client.PostAsync("/plugins/reload", null, Ct);
                reloaded.StatusCode.ShouldBe(HttpStatusCode.OK);
                using var after = JsonDocument.Parse(await reloaded.Content.ReadAsStringAsync(Ct));
                after.RootElement.GetProperty("plugins").EnumerateArray().Select(p => p.GetProperty("name").GetString()).ShouldBe(["a", "b"]);
                after.RootElement.GetProperty("plugins")[0].GetProperty("counters").GetProperty("calls").GetInt64().ShouldBe(1);

                Directory.Delete(_dir.Path, true);
                await File.WriteAllTextAsync(_dir.Path, "now a file", Ct);
                using var failed = await client.PostAsync("/plugins/reload", null, Ct);
                failed.StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
                using var error = JsonDocument.Parse(await failed.Content.ReadAsStringAsync(Ct));
                error.RootElement.GetProperty("error").GetString()!.ShouldContain("is not a directory");
                File.Delete(_dir.Path);
                Directory.CreateDirectory(_dir.Path);
            }
        }
    }

    /// <summary>
    /// A reload while another runs is refused at once with 409, not queued: a reload runs every start function (up to the
    /// load limit each), and each request waiting for it held a thread-pool thread. The running reload answers 200.
    /// </summary>
    [Fact]
    public async Task GivenAReloadRunning_WhenMoreReloadsArrive_ThenTheyAre409_AndTheRunningOneAnswers200()
    {
        _dir.Add("a", Wat.Plugin(Wat.Answer("authorize", """{"allow":true}""")));
        var (app, client) = await StartAsync(new PluginHostOptions { Directory = _dir.Path, LoadTimeout = TimeSpan.FromSeconds(5) }, _dir.Log);
        await using (app)
        {
            using (client)
            {
                // b's start function sleeps until the load limit ends it; the reload has loaded a before it starts b.
                _dir.Add("b", LimitsTests.SleepyStart(), """{"limits":{"timeout_ms":60000}}""");
                var running = client.PostAsync("/plugins/reload", null, Ct);
                while (_dir.Log.Lines.Count(l => l.Contains("Plugin a loaded", StringComparison.Ordinal)) < 2)
                {
                    running.IsCompleted.ShouldBeFalse();
                    await System.Threading.Tasks.Task.Delay(10, Ct);
                }

                var refused = await System.Threading.Tasks.Task.WhenAll(Enumerable.Range(0, 3).Select(_ => client.PostAsync("/plugins/reload", null, Ct)));
                foreach (var response in refused)
                {
                    using (response)
                    {
                        response.StatusCode.ShouldBe(HttpStatusCode.Conflict);
                        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
                        body.RootElement.GetProperty("error").GetString().ShouldBe("a reload of the plugins is already running; try again when it has finished");
                    }
                }

                using var done = await running;
                done.StatusCode.ShouldBe(HttpStatusCode.OK);
                using var listing = JsonDocument.Parse(await done.Content.ReadAsStringAsync(Ct));
                listing.RootElement.GetProperty("plugins").EnumerateArray().Select(p => p.GetProperty("name").GetString()).ShouldBe(["a", "b"]);
            }
        }
    }

    [Fact]
    public async Task WithJobs_TheHostMigratesAndTheWorkerRunsAJobAPluginEnqueued()
    {
        const string Schema = "plugins_hosting_tests";
        await TestDatabase.ResetAsync(Schema);
        var opts = """{"idempotency_key":"once"}"""u8.ToArray();
        _dir.Add(
            "j",
            Wat.Plugin(
                $$"""
                (data (i32.const 3000) "ping")
                (data (i32.const 3200) "{{Wat.Escape(opts)}}")
                (data (i32.const 4000) "{\"allow\":true}")
                (func (export "authorize") (param i32 i32) (result i64)
                  (drop (call $enqueue (i32.const 3000) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 3200) (i32.const {{opts.Length}}) (i32.const 0) (i32.const 0)))
                  (i64.const {{Wat.Packed(4000, 14)}}))
                {{Wat.Answer("handle_job", "{}")}}
                """,
                imports: """(import "queue" "enqueue" (func $enqueue (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"""),
            """{"capabilities":["queue"]}""");
        var options = new PluginHostOptions
        {
            Directory = _dir.Path,
            Jobs = new PluginJobOptions { ConnectionString = TestDatabase.ConnectionString, Schema = Schema, PollInterval = TimeSpan.FromMilliseconds(20) },
        };
        var (app, client) = await StartAsync(options);
        await using (app)
        {
            client.Dispose();
            var gate = app.Services.GetRequiredService<IPluginGate>();
            (await gate.AuthorizeAsync(new("u", PluginAction.Create), new PluginTaskInfo { Id = "", Name = "n" }, Ct)).Allowed.ShouldBeTrue();
            var state = "";
            for (var i = 0; i < 500 && state != "done"; i++)
            {
                state = await TestDatabase.ScalarAsync<string>($"select state from {Schema}.plugin_jobs where idempotency_key = 'once'") ?? "";
                await Task.Delay(20, Ct);
            }

            state.ShouldBe("done");
            (await TestDatabase.ScalarAsync<string>($"select type from {Schema}.plugin_jobs where idempotency_key = 'once'")).ShouldBe("plugin:j:ping");
        }
    }

    [Fact]
    public async Task NotADirectory_FailsTheStart()
    {
        var file = Path.Combine(_dir.Path, "file");
        await File.WriteAllTextAsync(file, "x", Ct);
        await Should.ThrowAsync<PluginDirectoryException>(async () => await StartAsync(new PluginHostOptions { Directory = file }));
    }

    [Fact]
    public async Task Metrics_AreReportedOnThePropellerPluginsMeter()
    {
        _dir.Add("t", Wat.Plugin("(func (export \"authorize\") (param i32 i32) (result i64) unreachable)"));
        var seen = new List<(string Instrument, long Value, string? Failure)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == PluginMetrics.MeterName && ReferenceEquals(instrument.Meter, _dir.Metrics.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? failure = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "failure")
                {
                    failure = tag.Value as string;
                }
            }

            lock (seen)
            {
                seen.Add((instrument.Name, value, failure));
            }
        });
        listener.Start();
        await _dir.Gate().AuthorizeAsync(new("u", PluginAction.Start), new PluginTaskInfo { Id = "x", Name = "n" }, Ct);
        seen.ShouldContain(("propeller.plugins.calls", 1, null));
        seen.ShouldContain(("propeller.plugins.failures", 1, "trap"));
        seen.ShouldContain(("propeller.plugins.denies", 1, null));
    }

    [Fact]
    public void FromEnvironment_ReadsTheVariables()
    {
        var env = new Dictionary<string, string> { ["MANAGER_PLUGIN_DIR"] = "/plugins", ["MANAGER_PLUGIN_JOBS_DB"] = "Host=x", ["MANAGER_PLUGIN_JOBS_SCHEMA"] = "jobs" };
        var options = PluginHostOptions.FromEnvironment(k => env.GetValueOrDefault(k));
        options.Directory.ShouldBe("/plugins");
        options.Jobs!.ConnectionString.ShouldBe("Host=x");
        options.Jobs.Schema.ShouldBe("jobs");
        PluginHostOptions.FromEnvironment(_ => null).Jobs.ShouldBeNull();
        new PluginJobOptions { ConnectionString = "x" }.Schema.ShouldBe(PluginJobOptions.DefaultSchema);
    }

    public void Dispose() => _dir.Dispose();
}
