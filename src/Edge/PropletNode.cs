using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Fetching;
using Propeller.Edge.Messaging;
using Propeller.Edge.Monitoring;
using Propeller.Edge.Tasks;
using Propeller.Plugins.Proplet;

namespace Propeller.Edge;

/// <summary>
/// One proplet (spec §4.3 step 5 on): connects to the broker with a Last Will that marks it offline, announces itself
/// on every (re)connect, subscribes to start/stop/invoke/registry, sends heartbeats and metrics, and hands commands to
/// the <see cref="TaskRunner"/>. Used by the host and, in-process, by the tests.
/// </summary>
public sealed class PropletNode : IAsyncDisposable
{
    private readonly PropletSettings _settings;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly MqttPublisher _publisher;
    private readonly ChunkAssembler _chunks;
    private readonly HttpClient _http;
    private readonly IWasmRuntime _runtime;
    private readonly TaskRunner _runner;
    private readonly SystemSampler _sampler = new();

    /// <summary>proplet_cpu_usage_ratio's own baseline: usage since the previous scrape. It showed the MQTT metrics
    /// loop's last figure, so with monitoring off or PROPLET_METRICS_INTERVAL=0 the gauge stayed 0.</summary>
    private readonly SystemSampler _scrapeSampler = new();
    private readonly CancellationTokenSource _lifetime = new();
    private readonly List<Task> _loops = [];
    private readonly string _runtimeName;
    private readonly TaskCompletionSource _discovered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly BinaryFetcher _fetcher;
    private BrokerConnection? _client;
    private MetricsServer? _metrics;
    private long _connects;
    private long _malformed;

    private static readonly TimeSpan RediscoveryInterval = TimeSpan.FromMinutes(5);

    /// <summary>After a connect without a session, the discovery (with what this proplet holds) goes out once more this
    /// much later (<see cref="OnConnectedAsync"/>).</summary>
    private static readonly TimeSpan SecondReportDelay = TimeSpan.FromSeconds(10);

    private readonly PropletPluginChain? _plugins;

    public PropletNode(PropletSettings settings, ILoggerFactory loggers, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(loggers);
        _settings = settings;
        _time = time;
        _logger = loggers.CreateLogger<PropletNode>();
        _publisher = new MqttPublisher(settings, loggers.CreateLogger<MqttPublisher>());
        _chunks = new ChunkAssembler(settings.MaxBinarySize, time, settings.ImageCacheBytes);
        _http = DownloadClient.Create(settings);
        if (settings.ExternalWasmRuntime is { } external && ExternalRuntime.Resolve(external) is { } path)
        {
            _runtime = new ExternalRuntime(path, settings, loggers.CreateLogger<ExternalRuntime>());
            _runtimeName = external;
        }
        else
        {
            if (settings.ExternalWasmRuntime is { } missing)
            {
                EdgeLog.ExternalRuntimeMissing(_logger, missing);
            }

            _runtime = new InProcessRuntime(settings, loggers.CreateLogger<InProcessRuntime>());
            // The original reports the configured external runtime even when it fell back (spec §1.3, quirk kept).
            _runtimeName = settings.ExternalWasmRuntime ?? _runtime.Name;
        }

        var fetcher = new BinaryFetcher(settings, _chunks, _publisher, _http);
        _fetcher = fetcher;
        var monitor = new TaskMonitor(settings, _publisher, time, loggers.CreateLogger<TaskMonitor>(), childProcesses: _runtime is ExternalRuntime);
        // A plugin directory that cannot be read disables plugins with a warning, as in the original (spec §5).
        _plugins = settings.PluginDir is { Length: > 0 } pluginDir ? PropletPluginChain.Load(pluginDir, loggers.CreateLogger<PropletPluginChain>()) : null;
        _runner = new TaskRunner(settings, _runtime, fetcher, _publisher, monitor, loggers.CreateLogger<TaskRunner>(), _plugins);
        ClientLogger = loggers.CreateLogger<BrokerConnection>();
    }

    public TaskRunner Runner => _runner;

    public bool IsConnected => _client?.IsConnected ?? false;

    private ILogger<BrokerConnection> ClientLogger { get; }

    /// <summary>Serves /health and /metrics, connects (retrying while the broker is unreachable), subscribes and starts
    /// the loops.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        EdgeLog.Starting(_logger, _settings.EntityId, BrokerOptions.Redacted(_settings.MqttAddress), _settings.BaseTopic, _runtimeName, _settings.MaxConcurrentTasks);
        foreach (var warning in _settings.Warnings)
        {
            EdgeLog.SettingKeptDefault(_logger, warning);
        }

        // Before the connect, which waits as long as the broker cannot be reached: a liveness probe on /health passes
        // meanwhile (it was started after the first connect, and the port refused connections until then).
        if (_settings.MetricsEnabled)
        {
            _metrics = new MetricsServer(_settings.MetricsPort, Series, () => _runner.RunningCount, _logger);
            if (_metrics.Start())
            {
                EdgeLog.MetricsListening(_logger, _settings.MetricsPort);
            }
        }

        try
        {
            await ConnectAsync(cancellationToken);
        }
        catch
        {
            // A start given up (cancelled, failed) leaves no port bound behind it, also for a caller that does not
            // dispose the node then.
            if (_metrics is { } metrics)
            {
                _metrics = null;
                await metrics.DisposeAsync();
            }

            throw;
        }

        var token = _lifetime.Token;
        _loops.Add(EveryAsync(_settings.LivelinessInterval, PublishAliveAsync, token));
        if (_settings.EnableMonitoring && _settings.MetricsInterval > TimeSpan.Zero)
        {
            _loops.Add(EveryAsync(_settings.MetricsInterval, PublishMetricsAsync, token));
        }

        _loops.Add(EveryAsync(TimeSpan.FromSeconds(60), SweepChunksAsync, token));
        _loops.Add(EveryAsync(RediscoveryInterval, PublishDiscoveryAsync, token, now: false)); // the connect's discovery is the first
    }

    private async Task ConnectAsync(CancellationToken cancellationToken)
    {
        // The connection retries with backoff while the broker is unreachable or refuses, and subscribes again after
        // every connect that finds no session.
        var client = new BrokerConnection(ClientOptions(), ClientLogger, _time) { Handler = HandleBatchAsync, Connected = OnConnectedAsync };
        _client = client;
        _publisher.Connection = client;
        await client.StartAsync(cancellationToken);
        EdgeLog.Subscribed(_logger);
        try
        {
            // Discovery goes out before the first heartbeat, so the manager registers the proplet with its metadata
            // instead of creating it from a heartbeat with none.
            await _discovered.Task.WaitAsync(TimeSpan.FromSeconds(10), _time, cancellationToken);
        }
        catch (TimeoutException)
        {
            // the heartbeats start anyway; discovery keeps retrying on its own
        }
    }

    /// <summary>How long leaving waits for its "offline" publish and DISCONNECT (internal: tests make the publish fail).</summary>
    internal TimeSpan GoodbyeTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Ends the tasks, says "offline" (the manager then re-dispatches what ran here) and disconnects; when the
    /// "offline" does not go out, leaves without DISCONNECT, so that the broker publishes the Last Will instead.</summary>
    public async ValueTask DisposeAsync()
    {
        await _lifetime.CancelAsync();
        if (_metrics is not null)
        {
            await _metrics.DisposeAsync();
        }

        await _runner.DisposeAsync();
        if (_plugins is not null)
        {
            await _plugins.DrainAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
            _plugins.Dispose();
        }

        foreach (var loop in _loops)
        {
            try
            {
                await loop;
            }
            catch (OperationCanceledException)
            {
                // stopping
            }
        }

        if (_client is { } client)
        {
            var saidOffline = false;
            try
            {
                using var timeout = new CancellationTokenSource(GoodbyeTimeout);
                if (client.IsConnected)
                {
                    await client.PublishAsync(Topics.Of(_settings.BaseTopic, Topics.PropletAlive), OfflinePayload(), _settings.Qos, timeout.Token);
                    saidOffline = true;
                    await client.DisconnectAsync(timeout.Token);
                }
            }
            catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or BrokerPublishException or TimeoutException or OperationCanceledException or IOException)
            {
                // leaving anyway; the Last Will covers it (below)
            }

            if (!saidOffline)
            {
                // The "offline" did not go out (timed out, refused, not connected): the connection is dropped without
                // DISCONNECT, so that the broker publishes the Last Will. A normal DISCONNECT tells it to discard the
                // Will, and the manager heard nothing until its liveness window ran out.
                EdgeLog.LeavingWithWill(_logger, _settings.EntityId);
                client.LeaveWithWill();
            }

            await client.DisposeAsync();
        }

        (_runtime as IDisposable)?.Dispose();
        _http.Dispose();
        _lifetime.Dispose();
        EdgeLog.Stopped(_logger, _settings.EntityId);
    }

    /// <summary>The broker connection's settings (internal: tests check what the settings turn into).</summary>
    internal BrokerOptions ClientOptions()
    {
        var options = new BrokerOptions
        {
            ClientId = _settings.EntityId,
            Username = _settings.EntityId,
            Password = _settings.ApiKey,
            ProtocolVersion = _settings.MqttProtocolVersion,
            CleanStart = _settings.CleanSession,
            SessionExpiryInterval = _settings.CleanSession ? 0u : 24 * 3600u,
            KeepAlive = _settings.KeepAlive,
            MaxInflight = _settings.Inflight,
            MaxPacketSize = (uint)_settings.MaxPacketSize,
            ReceiveQueueCapacity = _settings.RequestChannelCapacity,
            OperationTimeout = _settings.MqttTimeout,
            ReconnectDelay = TimeSpan.FromSeconds(1),
            MaxReconnectDelay = TimeSpan.FromSeconds(60),
            Will = new BrokerWill(Topics.Of(_settings.BaseTopic, Topics.PropletAlive), OfflinePayload(), _settings.Qos),
        }.WithAddress(_settings.MqttAddress);
        foreach (var path in new[] { Topics.Start, Topics.Stop, Topics.Invoke, Topics.RegistryChunks, Topics.RegistryFailure, Topics.RegistryBinaryChunks })
        {
            options.Subscriptions.Add((Topics.Of(_settings.BaseTopic, path), _settings.Qos));
        }

        // TLS on a tcp:// address when any TLS setting is given, as the manager and the proxy decide (it took a CA file:
        // a client certificate or the insecure flag alone was ignored, and the proplet spoke plain MQTT).
        if (options.Tls is not null || _settings.TlsCaCert is not null || _settings.TlsClientCert is not null || _settings.TlsInsecureSkipVerify)
        {
            options.Tls = new BrokerTls
            {
                CaFile = _settings.TlsCaCert,
                ClientCertificateFile = _settings.TlsClientCert,
                ClientKeyFile = _settings.TlsClientKey,
                AllowUntrustedCertificates = _settings.TlsInsecureSkipVerify,
            };
        }

        return options;
    }

    private byte[] OfflinePayload() =>
        JsonSerializer.SerializeToUtf8Bytes(new AliveMessage(_settings.EntityId, "offline", _settings.Namespace));

    private async Task OnConnectedAsync(bool sessionPresent, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _connects);
        // Discovery on every connect: the original sent it once, so a manager restarted meanwhile never learnt the metadata.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
        await PublishDiscoveryAsync(sessionPresent, linked.Token);
        EdgeLog.DiscoveryPublished(_logger, sessionPresent);
        _discovered.TrySetResult();
        if (!sessionPresent)
        {
            // Starts the broker dropped while this proplet had no session are sent again by the manager when the report
            // of what it holds (in the discovery) lacks them, but only those dispatched a few seconds before the report
            // (one dispatched closer may be on its way): a second report a little later covers the rest.
            _ = AnnounceAgainAsync(_lifetime.Token);
        }
    }

    private async Task AnnounceAgainAsync(CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(SecondReportDelay, _time, cancellationToken);
            await PublishDiscoveryAsync(null, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // stopping
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            EdgeLog.HandlerFailed(_logger, "(discovery)", ex);
        }
    }

    /// <summary>Discovery, also repeated every <see cref="RediscoveryInterval"/>: a manager that subscribed for the first time
    /// after this proplet connected (a new deployment, a lost session) learns the metadata without a reconnect. The manager
    /// records nothing when the metadata did not change. It carries the tasks this proplet holds (our extension,
    /// <see cref="TaskRunner.Held"/>), which our manager reconciles with what it has running here, and on a connect's
    /// discovery whether the broker kept the session (<see cref="DiscoveryMessage.SessionPresent"/>).</summary>
    private Task PublishDiscoveryAsync(CancellationToken cancellationToken) => PublishDiscoveryAsync(null, cancellationToken);

    private Task PublishDiscoveryAsync(bool? sessionPresent, CancellationToken cancellationToken)
    {
        var discovery = new DiscoveryMessage
        {
            PropletId = _settings.EntityId,
            Namespace = _settings.Namespace,
            Metadata = JsonSerializer.SerializeToElement(Discovery.Metadata(_settings, _runtimeName)),
            Tasks = JsonSerializer.SerializeToElement(_runner.Held()),
            SessionPresent = sessionPresent,
        };
        return _publisher.PublishAsync(Topics.PropletCreate, JsonSerializer.SerializeToUtf8Bytes(discovery), cancellationToken);
    }

    /// <summary>Commands one by one, in arrival order; they are acknowledged after this returns.</summary>
    private ValueTask HandleBatchAsync(IReadOnlyList<ReceivedMessage> messages, CancellationToken cancellationToken)
    {
        foreach (var message in messages)
        {
            Handle(message);
        }

        return ValueTask.CompletedTask;
    }

    private void Handle(ReceivedMessage message)
    {
        // Routed by substring like the original (spec §1.1), in its order.
        var topic = message.Topic;
        if (message.Retain)
        {
            // Every message of the protocol is published with retain=false (spec §1), and the broker clears the flag on
            // what it forwards to a subscription: a retained one is a message kept from before this subscription,
            // handed out on every (re)subscribe. Run, a retained start ran again at each reconnect of every proplet on
            // the channel, long after it was answered; a retained stop or invoke was replayed the same way.
            Malformed(topic, ReceivedMessage.RetainedCommand);
            return;
        }

        try
        {
            if (topic.Contains(Topics.Start, StringComparison.Ordinal))
            {
                _runner.HandleStart(message.Payload);
            }
            else if (topic.Contains(Topics.Invoke, StringComparison.Ordinal))
            {
                _runner.HandleInvoke(message.Payload);
            }
            else if (topic.Contains(Topics.Stop, StringComparison.Ordinal))
            {
                _runner.HandleStop(message.Payload);
            }
            else if (topic.Contains(Topics.RegistryChunks, StringComparison.Ordinal))
            {
                var rejected = _chunks.AddJson(message.Payload.Span);
                if (rejected is not null)
                {
                    Malformed(topic, rejected);
                }
            }
            else if (topic.Contains(Topics.RegistryBinaryChunks, StringComparison.Ordinal))
            {
                // Ours (docs/proxy.md): the binary chunks our proxy sends to a request that announced them.
                var rejected = _chunks.AddBinary(message.Payload.Span);
                if (rejected is not null)
                {
                    Malformed(topic, rejected);
                }
            }
            else if (topic.Contains(Topics.RegistryFailure, StringComparison.Ordinal))
            {
                // Ours (docs/proxy.md): the proxy cannot deliver an image; whoever waits for it fails now, not after 60 s.
                var failure = JsonSerializer.Deserialize<RegistryFailureMessage>(message.Payload.Span);
                if (failure?.AppName is not { Length: > 0 } app)
                {
                    Malformed(topic, "app_name is required");
                }
                else
                {
                    _chunks.Fail(app, failure.Error is { Length: > 0 } error ? error : $"the proxy could not deliver {app}");
                }
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a string that is not valid UTF-8.
            Malformed(topic, ex.Message);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            EdgeLog.HandlerFailed(_logger, topic, ex);
        }
    }

    /// <summary>A command dropped as malformed: logged and counted (proplet_mqtt_malformed_total, with the invalid starts).</summary>
    private void Malformed(string topic, string reason)
    {
        Interlocked.Increment(ref _malformed);
        EdgeLog.Malformed(_logger, topic, reason);
    }

    private Task PublishAliveAsync(CancellationToken cancellationToken) =>
        _publisher.PublishAsync(
            Topics.PropletAlive, JsonSerializer.SerializeToUtf8Bytes(new AliveMessage(_settings.EntityId, "alive", _settings.Namespace)), cancellationToken);

    /// <summary>The Prometheus series of the original (spec §4.2), and ours: proplet_chunks_rejected_total, proplet_mqtt_malformed_total.</summary>
    private List<(string Name, string Type, double Value)> Series()
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return
        [
            ("proplet_tasks_started_total", "counter", _runner.Started),
            ("proplet_tasks_completed_total", "counter", _runner.Completed),
            ("proplet_tasks_failed_total", "counter", _runner.Failed),
            ("proplet_tasks_running", "gauge", _runner.RunningCount),
            ("proplet_mqtt_reconnects_total", "counter", Math.Max(0, Interlocked.Read(ref _connects) - 1)),
            ("proplet_wasm_fetch_bytes_total", "counter", _fetcher.FetchedBytes),
            ("proplet_chunks_rejected_total", "counter", _chunks.Rejected),
            ("proplet_mqtt_malformed_total", "counter", Interlocked.Read(ref _malformed) + _runner.InvalidStarts),
            ("proplet_cpu_usage_ratio", "gauge", _scrapeSampler.SystemCpuPercent() / 100),
            ("proplet_cpu_user_seconds", "gauge", process.UserProcessorTime.TotalSeconds),
            ("proplet_cpu_system_seconds", "gauge", process.PrivilegedProcessorTime.TotalSeconds),
            ("proplet_memory_rss_bytes", "gauge", process.WorkingSet64),
            ("proplet_memory_container_usage_bytes", "gauge", SystemSampler.ContainerUsageBytes() ?? 0),
            ("proplet_memory_container_limit_bytes", "gauge", SystemSampler.ContainerLimitBytes() ?? 0),
        ];
    }

    private async Task PublishMetricsAsync(CancellationToken cancellationToken)
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        var systemPercent = _sampler.SystemCpuPercent();
        var message = new PropletMetricsMessage(
            _settings.EntityId,
            _settings.Namespace,
            _time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture),
            new CpuMetrics(process.UserProcessorTime.TotalSeconds, process.PrivilegedProcessorTime.TotalSeconds, systemPercent),
            new MemoryMetrics
            {
                RssBytes = (ulong)Math.Max(0, process.WorkingSet64),
                ContainerUsageBytes = OperatingSystem.IsLinux() ? SystemSampler.ContainerUsageBytes() ?? 0 : null,
                ContainerLimitBytes = SystemSampler.ContainerLimitBytes(),
            });
        await _publisher.PublishAsync(Topics.PropletMetrics, JsonSerializer.SerializeToUtf8Bytes(message), cancellationToken);
    }

    private Task SweepChunksAsync(CancellationToken cancellationToken)
    {
        foreach (var (app, received, total) in _chunks.Sweep(_settings.ChunkTtl))
        {
            EdgeLog.ChunksExpired(_logger, app, received, total);
        }

        return Task.CompletedTask;
    }

    /// <summary>Runs <paramref name="work"/> now (unless <paramref name="now"/> is false) and then every
    /// <paramref name="interval"/> until cancelled; a failed round is logged and the loop goes on.</summary>
    private async Task EveryAsync(TimeSpan interval, Func<CancellationToken, Task> work, CancellationToken cancellationToken, bool now = true)
    {
        using var timer = new PeriodicTimer(interval, _time);
        if (!now && !await timer.WaitForNextTickAsync(cancellationToken))
        {
            return;
        }

        do
        {
            try
            {
                await work(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                EdgeLog.HandlerFailed(_logger, "(periodic)", ex);
            }
        }
        while (await timer.WaitForNextTickAsync(cancellationToken));
    }
}
