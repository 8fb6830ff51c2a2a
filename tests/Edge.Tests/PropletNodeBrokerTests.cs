using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;

namespace Propeller.Edge.Tests;

/// <summary>A proplet against the real mosquitto (PROPELLER_TEST_MQTT), watched by a second client on its channel.</summary>
public sealed class PropletNodeBrokerTests : IAsyncLifetime
{
    private readonly PropletSettings _settings = TestSettings.Create() with
    {
        MetricsInterval = TimeSpan.FromSeconds(1),
        LivelinessInterval = TimeSpan.FromSeconds(1),
        Description = "test proplet",
        Tags = ["lab", "x86"],
    };

    private BrokerConnection _observer = null!;
    private Inbox _observed = null!;
    private PropletNode _node = null!;

    public async ValueTask InitializeAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        _observer = new BrokerConnection(new BrokerOptions { ClientId = "obs-" + Guid.NewGuid().ToString("N")[..8] }.WithAddress(TestBroker.Address));
        _observed = Inbox.Of(_observer);
        await _observer.StartAsync(ct);
        await _observer.SubscribeAsync(_settings.BaseTopic + "/#", MqttQualityOfServiceLevel.AtLeastOnce, ct);
        _node = new PropletNode(_settings, NullLoggerFactory.Instance, TimeProvider.System);
        await _node.StartAsync(ct);
    }

    public async ValueTask DisposeAsync()
    {
        await _node.DisposeAsync();
        await _observer.DisposeAsync();
    }

    [Fact]
    public async Task GivenAStartedProplet_WhenWatched_ThenDiscoveryComesFirstThenHeartbeatsAndMetrics()
    {
        var discovery = await NextAsync(Topics.PropletCreate, skipOthers: false);
        discovery.GetProperty("proplet_id").GetString().ShouldBe(_settings.EntityId);
        discovery.GetProperty("namespace").GetString().ShouldBe("default");
        var metadata = discovery.GetProperty("metadata");
        metadata.GetProperty("description").GetString().ShouldBe("test proplet");
        metadata.GetProperty("tags").EnumerateArray().Select(t => t.GetString()).ShouldBe(["lab", "x86"]);
        metadata.GetProperty("os").GetString().ShouldBe("linux");
        metadata.GetProperty("wasm_runtime").GetString().ShouldBe("wasmtime-internal");

        var alive = await NextAsync(Topics.PropletAlive);
        alive.GetRawText().ShouldBe($$"""{"proplet_id":"{{_settings.EntityId}}","status":"alive","namespace":"default"}""");

        var metrics = await NextAsync(Topics.PropletMetrics);
        DateTimeOffset.TryParse(metrics.GetProperty("timestamp").GetString(), out _).ShouldBeTrue();
        metrics.GetProperty("cpu_metrics").GetProperty("percent").GetDouble().ShouldBeInRange(0, 100);
        metrics.GetProperty("memory_metrics").GetProperty("rss_bytes").GetUInt64().ShouldBeGreaterThan(0UL);
    }

    /// <summary>The connect's discovery is the only one at start (the 5-minute rediscovery waited nothing before its first;
    /// the second after a connect without a session comes 10 s later).</summary>
    [Fact]
    public async Task GivenAStartedProplet_WhenItHasRunThreeSeconds_ThenItSentOneDiscovery()
    {
        await NextAsync(Topics.PropletCreate, skipOthers: false);
        await NextAsync(Topics.PropletAlive); // its periodic loops run from here
        var more = 0;
        using var window = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        window.CancelAfter(TimeSpan.FromSeconds(3));
        try
        {
            while (true)
            {
                var message = await _observed.ReadAsync(window.Token);
                more += message.Topic.EndsWith("/" + Topics.PropletCreate, StringComparison.Ordinal) ? 1 : 0;
            }
        }
        catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
        {
            // the window ended
        }

        more.ShouldBe(0);
    }

    /// <summary>
    /// The discovery carries what the proplet holds (none at its connect) and, on the connect's, that the broker kept no
    /// session; after a connect without a session it goes out once more 10 s later, with the task it runs by then (and
    /// no session flag), for the manager to send again a start the broker dropped.
    /// </summary>
    [Fact]
    public async Task GivenAConnectWithoutASession_WhenTenSecondsHavePassed_ThenTheDiscoveryComesAgainWithTheTasksHeld()
    {
        var first = await NextAsync(Topics.PropletCreate, skipOthers: true);
        first.GetProperty("tasks").GetArrayLength().ShouldBe(0);
        first.GetProperty("session_present").GetBoolean().ShouldBeFalse();
        var id = Guid.NewGuid().ToString();
        var start = new StartMessage { Id = id, Name = "main", File = Convert.ToBase64String(Modules.Spin), PropletId = _settings.EntityId, Attempt = 2, Dispatch = 1 };
        await PublishAsync(Topics.Start, JsonSerializer.SerializeToUtf8Bytes(start));

        var second = await NextAsync(Topics.PropletCreate, match: d => d.GetProperty("tasks").GetArrayLength() > 0);

        second.GetProperty("tasks").GetRawText().ShouldBe($$"""[{"task_id":"{{id}}","attempt":2,"dispatch":1}]""");
        second.TryGetProperty("session_present", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task GivenTheDemoStartOnTheBroker_WhenThePropletRunsIt_ThenTheResultArrivesOnTheResultsTopic()
    {
        var id = Guid.NewGuid().ToString();
        var start = new StartMessage { Id = id, Name = "main", File = Modules.AdditionBase64, Inputs = ["10", "32"], PropletId = _settings.EntityId };
        await PublishAsync(Topics.Start, JsonSerializer.SerializeToUtf8Bytes(start));

        var result = await NextAsync(Topics.Results);

        result.GetRawText().ShouldBe($$"""{"task_id":"{{id}}","proplet_id":"{{_settings.EntityId}}","results":"42","error":null}""");
    }

    [Fact]
    public async Task GivenAnInvoke_WhenNoLatentTaskRunsHere_ThenTheReplyHasTheTextTheManagerLooksFor()
    {
        await PublishAsync(Topics.Invoke, Encoding.UTF8.GetBytes("""{"id":"lat","invocation_id":"inv-1"}"""));

        var reply = await NextAsync(Topics.InvokeResults);

        reply.GetProperty("invocation_id").GetString().ShouldBe("inv-1");
        reply.GetProperty("error").GetString().ShouldNotBeNull().ShouldContain("has not been precompiled");
    }

    [Fact]
    public async Task GivenGarbageOnEveryTopic_WhenReceived_ThenThePropletStaysUpAndStillRunsTasks()
    {
        foreach (var path in new[] { Topics.Start, Topics.Stop, Topics.Invoke, Topics.RegistryChunks })
        {
            await PublishAsync(path, Encoding.UTF8.GetBytes("{not json"));
            await PublishAsync(path, Encoding.UTF8.GetBytes("[]"));
        }

        var id = Guid.NewGuid().ToString();
        await PublishAsync(Topics.Start, JsonSerializer.SerializeToUtf8Bytes(new StartMessage { Id = id, Name = "main", File = Modules.AdditionBase64, Inputs = ["1", "1"] }));

        (await NextAsync(Topics.Results, match: r => r.GetProperty("task_id").GetString() == id)).GetProperty("results").GetString().ShouldBe("2");
        _node.IsConnected.ShouldBeTrue();
    }

    /// <summary>
    /// A start kept retained by the broker (the protocol publishes with retain=false) is ignored: it was handed to the
    /// proplet at every subscribe and ran again at each reconnect, long after it was answered.
    /// </summary>
    [Fact]
    public async Task GivenARetainedStart_WhenAPropletSubscribes_ThenItIsNotRunButALiveStartIs()
    {
        var ct = TestContext.Current.CancellationToken;
        var settings = TestSettings.Create();
        var start = Topics.Of(settings.BaseTopic, Topics.Start);
        await _observer.SubscribeAsync(Topics.Of(settings.BaseTopic, Topics.Results), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        var retained = new StartMessage { Id = "retained", Name = "main", File = Modules.AdditionBase64, Inputs = ["1", "1"] };
        await _observer.PublishAsync(start, JsonSerializer.SerializeToUtf8Bytes(retained), MqttQualityOfServiceLevel.AtLeastOnce, retain: true, orderKey: null, ct);
        try
        {
            await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
            await node.StartAsync(ct);
            var live = new StartMessage { Id = "live", Name = "main", File = Modules.AdditionBase64, Inputs = ["2", "2"] };
            await _observer.PublishAsync(start, JsonSerializer.SerializeToUtf8Bytes(live), MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, ct);

            // Both would run at once; the retained one, delivered first, would have its result out by the live one's.
            var answered = new List<string?>();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            while (!answered.Contains("live"))
            {
                var message = await _observed.ReadAsync(timeout.Token);
                if (message.Topic == Topics.Of(settings.BaseTopic, Topics.Results))
                {
                    answered.Add(JsonSerializer.Deserialize<JsonElement>(message.Payload.Span).GetProperty("task_id").GetString());
                }
            }

            node.Runner.Started.ShouldBe(1);
            answered.ShouldBe(["live"]);
        }
        finally
        {
            // an empty retained payload clears the broker's copy
            await _observer.PublishAsync(start, ReadOnlyMemory<byte>.Empty, MqttQualityOfServiceLevel.AtLeastOnce, retain: true, orderKey: null, ct);
        }
    }

    [Fact]
    public async Task GivenTheMetricsEndpoint_WhenScraped_ThenItServesPrometheusTextAndHealth()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = FreePort();
        await using var node = new PropletNode(TestSettings.Create() with { MetricsEnabled = true, MetricsPort = port }, NullLoggerFactory.Instance, TimeProvider.System);
        await node.StartAsync(ct);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };

        var metrics = await http.GetStringAsync("/metrics", ct);
        var health = await http.GetStringAsync("/health", ct);
        using var missing = await http.GetAsync("/nope", ct);

        metrics.ShouldContain("# TYPE proplet_tasks_started_total counter\nproplet_tasks_started_total 0\n");
        metrics.ShouldContain("proplet_memory_rss_bytes ");
        health.ShouldBe("""{"status":"ok","running_tasks":0}""");
        missing.StatusCode.ShouldBe(System.Net.HttpStatusCode.NotFound);
    }

    /// <summary>A malformed command is counted where the proplet's other series are (it was only logged).</summary>
    [Fact]
    public async Task GivenAMalformedStart_WhenReceived_ThenItIsCountedAndTheNextValidStartRuns()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = FreePort();
        var settings = TestSettings.Create() with { MetricsEnabled = true, MetricsPort = port };
        await _observer.SubscribeAsync(Topics.Of(settings.BaseTopic, Topics.Results), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        await node.StartAsync(ct);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        var start = Topics.Of(settings.BaseTopic, Topics.Start);

        await _observer.PublishAsync(start, "{"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, ct);
        var valid = new StartMessage { Id = "after-malformed", Name = "main", File = Modules.AdditionBase64, Inputs = ["1", "1"] };
        await _observer.PublishAsync(start, JsonSerializer.SerializeToUtf8Bytes(valid), MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, ct);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            var message = await _observed.ReadAsync(timeout.Token);
            if (message.Topic == Topics.Of(settings.BaseTopic, Topics.Results))
            {
                var result = JsonSerializer.Deserialize<JsonElement>(message.Payload.Span);
                result.GetProperty("task_id").GetString().ShouldBe("after-malformed");
                result.GetProperty("results").GetString().ShouldBe("2");
                break;
            }
        }

        var metrics = await http.GetStringAsync("/metrics", ct);
        metrics.ShouldContain("# TYPE proplet_mqtt_malformed_total counter\nproplet_mqtt_malformed_total 1\n");
    }

    /// <summary>
    /// Leaving, a proplet whose "offline" cannot be published (its time is up at once here; the broker slow or away on
    /// SIGTERM) drops the connection without DISCONNECT: the broker publishes its Last Will, so the manager still hears
    /// "offline". Before, the normal DISCONNECT that followed told the broker to discard the Will, and the manager heard
    /// nothing until its liveness window ran out.
    /// </summary>
    [Fact]
    public async Task GivenAnOfflinePublishThatFails_WhenThePropletLeaves_ThenTheBrokerPublishesItsLastWill()
    {
        var ct = TestContext.Current.CancellationToken;
        var settings = _settings with { EntityId = "p-" + Guid.NewGuid().ToString("N")[..8] };
        var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        await node.StartAsync(ct);
        await NextAsync(Topics.PropletCreate, match: d => d.GetProperty("proplet_id").GetString() == settings.EntityId);
        node.GoodbyeTimeout = TimeSpan.Zero;

        await node.DisposeAsync();

        // within 30 s, or NextAsync fails: the heartbeats stopped with the node, and only the Will can say "offline"
        var offline = await NextAsync(Topics.PropletAlive, match: a => a.GetProperty("proplet_id").GetString() == settings.EntityId
                                                                     && a.GetProperty("status").GetString() == "offline");
        offline.GetProperty("namespace").GetString().ShouldBe("default");
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private Task PublishAsync(string path, byte[] payload) =>
        _observer.PublishAsync(Topics.Of(_settings.BaseTopic, path), payload, MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, TestContext.Current.CancellationToken);

    /// <summary>The next message on <paramref name="path"/>; with <paramref name="skipOthers"/> false, the very next one must be it.</summary>
    private async Task<JsonElement> NextAsync(string path, bool skipOthers = true, Func<JsonElement, bool>? match = null)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            var message = await _observed.ReadAsync(timeout.Token);
            var received = message.Topic[(_settings.BaseTopic.Length + 1)..];
            if (received == path)
            {
                var json = JsonSerializer.Deserialize<JsonElement>(message.Payload.Span);
                if (match is null || match(json))
                {
                    return json;
                }
            }
            else if (!skipOthers)
            {
                throw new ShouldAssertException($"expected {path} first, got {received}");
            }
        }
    }
}
