using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using MQTTnet.Exceptions;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;
using Propeller.Proxy.Configuration;
using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Serving;

/// <summary>
/// The proxy (spec propeller-edge.md §3.5): subscribes to <c>registry/proplet</c>, pulls the image a request names
/// from its OCI registry and publishes it on <c>registry/server</c> in PROXY_CHUNK_SIZE chunks with the original JSON.
/// Beyond the original (docs/proxy.md): the reference's own tag or digest is pulled; requests for an image already in
/// flight share its chunks (single flight); pulled artefacts are cached by digest; every chunk carries the artefact's
/// <c>sha256</c>; a request that lists <c>chunks</c> gets only those; a request whose <c>have</c> names the image's
/// sha256 gets its last chunk only (the proplet holds the image verified; one chunk announces the digest); a request
/// whose <c>formats</c> names <c>binary</c> gets raw-bytes chunks on <c>registry/chunk</c> (<see cref="BinaryChunks"/>)
/// instead of base64 JSON; a failure is published on <c>registry/failure</c> instead of being only logged. Used by the
/// host and, in-process, by tests and benchmarks.
/// </summary>
public sealed class ProxyNode : IAsyncDisposable
{
    /// <summary>How many flights may be under way at once; a request for another is refused as busy (1,000; tests lower it).</summary>
    internal int MaxPending { get; set; } = 1000;
    private static readonly JsonEncodedText AppNameField = JsonEncodedText.Encode("app_name");
    private static readonly JsonEncodedText ChunkIndexField = JsonEncodedText.Encode("chunk_idx");
    private static readonly JsonEncodedText TotalChunksField = JsonEncodedText.Encode("total_chunks");
    private static readonly JsonEncodedText DataField = JsonEncodedText.Encode("data");
    private static readonly JsonEncodedText Sha256Field = JsonEncodedText.Encode("sha256");
    private static readonly JsonEncodedText SizeField = JsonEncodedText.Encode("size");

    private readonly ProxySettings _settings;
    private readonly ILogger _logger;
    private readonly ILogger<BrokerConnection> _brokerLogger;
    private readonly TimeProvider _time;
    private readonly HttpClient _http;
    private readonly RegistryClient _registry;
    private readonly ConcurrentDictionary<string, Flight> _inFlight = new(StringComparer.Ordinal);

    /// <summary>The re-requests waiting for a delivery of their image to end, by image and format: the chunks they list
    /// (<see cref="Defer"/>).</summary>
    private readonly Dictionary<(string App, bool Binary), SortedSet<int>> _deferred = [];
    private readonly Lock _deferring = new();
    private readonly ConcurrentDictionary<string, Descriptor> _layersByDigestReference = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _digestsByTag = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _fetchSlots;
    private readonly CancellationTokenSource _lifetime = new();
    private BrokerConnection? _connection;
    private int _disposed;

    public ProxyNode(ProxySettings settings, ILoggerFactory loggers, TimeProvider time)
        : this(settings, loggers, time, new SocketsHttpHandler { AllowAutoRedirect = true, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
    {
    }

    /// <summary>For tests: the registry is spoken to through <paramref name="registryHandler"/> (a stub registry, for what
    /// the real one cannot be made to serve).</summary>
    internal ProxyNode(ProxySettings settings, ILoggerFactory loggers, TimeProvider time, HttpMessageHandler registryHandler)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(loggers);
        _settings = settings;
        _time = time;
        _logger = loggers.CreateLogger<ProxyNode>();
        _brokerLogger = loggers.CreateLogger<BrokerConnection>();
        _fetchSlots = new SemaphoreSlim(settings.MaxConcurrentFetches);
        BinaryChunks = settings.BinaryChunks;
        Cache = new ArtifactCache(settings.CacheBytes);
        _http = new HttpClient(registryHandler)
        {
            Timeout = settings.RegistryTimeout,
        };
        var credentials = settings.Authenticate && settings.RegistryHost is { } host
            ? new RegistryCredentials(host, settings.RegistryUsername, settings.RegistryPassword, settings.RegistryToken)
            : null;
        _registry = new RegistryClient(_http, new RegistryAuth(credentials, time), _settings.PlainHttp.Allows, _logger);
    }

    public ProxyMetrics Metrics { get; } = new();

    /// <summary>For tests: called before each chunk's publish (it may wait, as a slow broker would); a chunk for which it
    /// returns true is not published, as if the broker had refused it (the publication skips it and counts it, like any
    /// failed chunk; the proplet asks for it again).</summary>
    internal Func<string, int, ValueTask<bool>>? LoseChunk { get; set; }

    public ArtifactCache Cache { get; }

    /// <summary>Whether a request that announces binary chunks gets them (PROXY_BINARY_CHUNKS); false: JSON for every
    /// request. Settable for the benchmark, which measures both formats in one run.</summary>
    internal bool BinaryChunks { get; set; }

    public int InFlight => _inFlight.Count;

    /// <summary>For tests: the layers remembered by digest reference, and how many tags are remembered.</summary>
    internal IReadOnlyDictionary<string, Descriptor> LayersByDigestReference => _layersByDigestReference;

    internal int TagsRemembered => _digestsByTag.Count;

    /// <summary>For tests: the broker connection, once started.</summary>
    internal BrokerConnection? Connection => _connection;

    public bool IsConnected => _connection?.IsConnected ?? false;

    /// <summary>Connects (retrying while the broker is unreachable) and subscribes to <c>registry/proplet</c>.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        ProxyLog.Starting(_logger, _settings.EntityId, BrokerOptions.Redacted(_settings.MqttAddress), _settings.BaseTopic, _settings.ChunkSize, _settings.CacheBytes);
        var options = new BrokerOptions
        {
            ClientId = _settings.EntityId,
            Username = _settings.EntityId,
            Password = _settings.ApiKey,
            CleanStart = true,
            OperationTimeout = _settings.MqttTimeout,
            ReconnectDelay = TimeSpan.FromSeconds(1),
            MaxReconnectDelay = TimeSpan.FromMinutes(1),
            AllowPacketFragmentation = true, // chunks go out as prefix, encoded chunk and suffix, never joined (ChunkBodies)
        }.WithAddress(_settings.MqttAddress);
        options.Subscriptions.Add((Topics.Of(_settings.BaseTopic, Topics.RegistryRequest), _settings.Qos));
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

        var connection = new BrokerConnection(options, _brokerLogger, _time) { Handler = HandleBatchAsync };
        _connection = connection;
        await connection.StartAsync(cancellationToken);
        ProxyLog.Subscribed(_logger);
    }

    /// <summary>Pulls <paramref name="appName"/> (or takes it from the cache); the second value says whether it came
    /// from the cache. Throws <see cref="RegistryException"/> with the reason for the proplet.</summary>
    public Task<(Artifact Artifact, bool Cached)> GetArtifactAsync(string appName, CancellationToken cancellationToken) =>
        FetchAsync(appName, pulling: null, cancellationToken);

    /// <summary>As <see cref="GetArtifactAsync"/>; before a pull, <paramref name="pulling"/> is given the layer and may
    /// return chunks to prepare as the bytes arrive and a callback for them (<see cref="RegistryClient.GetBlobAsync(ImageReference, Descriptor, long, Func{byte[], int, ValueTask}?, CancellationToken)"/>).
    /// A pulled artefact enters the cache with its JSON chunks if the pull encoded them; with its bytes only otherwise
    /// (a binary publication, or none: the JSON is encoded when a JSON request needs it).</summary>
    private async Task<(Artifact Artifact, bool Cached)> FetchAsync(
        string appName, Func<Descriptor, (IChunkPayloads Chunks, Func<byte[], int, ValueTask> Received)?>? pulling, CancellationToken cancellationToken)
    {
        if (!ImageReference.TryParse(appName, out var reference, out var error))
        {
            throw new RegistryException(error);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_settings.RegistryTimeout);
        var registryTime = Stopwatch.StartNew();
        try
        {
            // A digest names content that never changes: its layer is remembered; a tag is resolved every time.
            var key = reference.Digest is null ? null : $"{reference.ApiHost}/{reference.Repository}@{reference.Digest}";
            if (key is null || !_layersByDigestReference.TryGetValue(key, out var layer))
            {
                // Only what a pull needs is kept: the manifest's descriptor brings its annotations, platform and media
                // type (up to the manifest's 4 MiB), which the tables below pinned for the proxy's life.
                var resolved = await _registry.ResolveLayerAsync(reference, _settings.MaxArtifactBytes, timeout.Token);
                layer = new Descriptor(null, resolved.Digest, resolved.Size);
                if (key is not null && _layersByDigestReference.Count < 10_000)
                {
                    _layersByDigestReference[key] = layer;
                }
                else if (key is null && (_digestsByTag.Count < 10_000 || _digestsByTag.ContainsKey(reference.ToString())))
                {
                    _digestsByTag[reference.ToString()] = layer.Digest;
                }
            }

            if (Cache.TryGet(layer.Digest, out var cached))
            {
                Metrics.CacheHit();
                return (cached, true);
            }

            var streamed = pulling?.Invoke(layer);
            var data = await _registry.GetBlobAsync(
                reference, layer, _settings.MaxArtifactBytes, streamed is { Received: var publish } ? PublishingAsync : null, timeout.Token);

            // PROXY_REGISTRY_TIMEOUT bounds the registry, not the broker: while the bytes received so far are published
            // (waiting for the publication's window when the broker is slow), the registry's clock stands still.
            async ValueTask PublishingAsync(byte[] bytes, int received)
            {
                registryTime.Stop();
                timeout.CancelAfter(Timeout.InfiniteTimeSpan);
                try
                {
                    await publish(bytes, received);
                }
                finally
                {
                    registryTime.Start();
                    timeout.CancelAfter(registryTime.Elapsed < _settings.RegistryTimeout ? _settings.RegistryTimeout - registryTime.Elapsed : TimeSpan.Zero);
                }
            }

            Metrics.Fetched(data.Length);
            var artifact = new Artifact(layer.Digest, data, Sha256Of(layer.Digest) ?? Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data)));
            if (streamed is { Chunks: var chunks })
            {
                chunks.PrepareAll(data);
                if (chunks is ChunkBodies bodies && bodies.ChunkSize == _settings.ChunkSize)
                {
                    artifact.Attach(bodies);
                }
            }

            Cache.Add(artifact);
            return (artifact, false);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new RegistryException($"image {reference}: the registry did not deliver it within {_settings.RegistryTimeout.TotalSeconds:0} s (PROXY_REGISTRY_TIMEOUT)", ex);
        }
    }

    /// <summary>Whether a request's <c>have</c> names <paramref name="sha256"/>.</summary>
    private static bool Held(IReadOnlyList<string> have, string sha256) => have.Contains(sha256, StringComparer.OrdinalIgnoreCase);

    /// <summary>The hex sha256 a <c>sha256:</c> digest names; null for another algorithm.</summary>
    private static string? Sha256Of(string digest) =>
        digest.StartsWith("sha256:", StringComparison.Ordinal) ? digest["sha256:".Length..].ToLowerInvariant() : null;

    /// <summary>The JSON of one chunk: the original's four fields and our <c>sha256</c> and <c>size</c>; the base64 is written straight
    /// into the buffer (no escaping: base64 needs none, and the default encoder would escape every '+').</summary>
    public static byte[] ChunkJson(string appName, Artifact artifact, int index, int total, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        var offset = (long)index * chunkSize;
        var length = (int)Math.Min(chunkSize, Math.Max(0, artifact.Data.LongLength - offset));
        var buffer = new ArrayBufferWriter<byte>((length * 4 / 3) + appName.Length + 160);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString(AppNameField, appName);
            writer.WriteNumber(ChunkIndexField, index);
            writer.WriteNumber(TotalChunksField, total);
            writer.WriteBase64String(DataField, artifact.Data.AsSpan((int)Math.Min(offset, artifact.Data.LongLength), length));
            writer.WriteString(Sha256Field, artifact.Sha256);
            writer.WriteNumber(SizeField, artifact.Data.LongLength);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _lifetime.CancelAsync();
        try
        {
            await Task.WhenAll(_inFlight.Values.Select(f => f.Work)).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or RegistryException)
        {
            // stopping
        }

        if (_connection is { } connection)
        {
            await connection.DisposeAsync();
        }

        _http.Dispose();
        if (_inFlight.IsEmpty)
        {
            // Not while flights outlive the grace period: each releases its fetch slot and reads the lifetime when it
            // ends (a disposed semaphore's release threw out of the flight).
            _fetchSlots.Dispose();
            _lifetime.Dispose();
        }

        ProxyLog.Stopped(_logger, _settings.EntityId);
    }

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
        if (message.Retain)
        {
            // Requests are published with retain=false (spec §1), and the broker clears the flag on what it forwards to a
            // subscription: a retained one was kept from before this subscription and is handed out on every
            // (re)subscribe, so the image was pulled and published again at each reconnect, for nobody waiting.
            ProxyLog.Malformed(_logger, message.Topic, ReceivedMessage.RetainedCommand);
            return;
        }

        RegistryRequestMessage? request;
        try
        {
            request = JsonSerializer.Deserialize<RegistryRequestMessage>(message.Payload.Span);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            ProxyLog.Malformed(_logger, message.Topic, ex.Message);
            return;
        }

        if (request?.AppName is not { Length: > 0 } app)
        {
            ProxyLog.Malformed(_logger, message.Topic, "app_name must be a non-empty string");
            return;
        }

        // Bounded before anything keeps or repeats them: the name keys flights, deferred re-requests and the failure
        // message (an image reference is at most 1,024 characters, ImageReference); the chunk list is copied into the
        // flight's key and a deferred set, and no proplet assembles more chunks than ChunkAssembler.MaxChunks.
        if (app.Length > ImageReference.MaxLength)
        {
            ProxyLog.Malformed(_logger, message.Topic, $"app_name is {app.Length} characters, over {ImageReference.MaxLength}");
            return;
        }

        if (request.Chunks is { } listed && (listed.Count > ProxySettingsLoader.MaxChunks || listed.Any(i => i < 0)))
        {
            ProxyLog.Malformed(
                _logger, message.Topic, listed.Count > ProxySettingsLoader.MaxChunks ? $"chunks lists {listed.Count} entries, over {ProxySettingsLoader.MaxChunks}" : "chunks lists a negative index");
            return;
        }

        Metrics.Request();
        // Requests naming held images share a flight with the rest: it sends one chunk only when every request it serves
        // holds the image (Flight.Holds), so one that needs every chunk never shares a delivery of one chunk (an old
        // proplet would wait for the rest in vain). Before, each set of held images was a flight of its own: proplets
        // that had run different images, asking for one at once, each got a pull and a broadcast of every chunk. A
        // request listing the chunks it misses is a flight of its own: joined to a delivery already under way it could
        // lose chunks that delivery published before it arrived; while a delivery of the image is under way, it waits
        // for that one to end (no second pull), see below.
        var have = request.Have is { Count: > 0 } held ? held.Where(h => h is { Length: 64 }).Take(16).ToList() : [];
        // Binary chunks go on their own topic, which a proplet that asked for JSON (an old one) does not read: a flight
        // of its own too.
        var binary = BinaryChunks && request.Formats is { } formats && formats.Contains(RegistryRequestMessage.BinaryFormat, StringComparer.OrdinalIgnoreCase);
        if (binary)
        {
            Metrics.BinaryRequest();
        }

        var flight = FlightOf(app, request.Chunks, binary);
        if (_inFlight.Count >= MaxPending && !_inFlight.ContainsKey(flight))
        {
            ProxyLog.Busy(_logger, _inFlight.Count, app);
            if (RunningFor(app).Length == 0)
            {
                // Not while a delivery of the image is under way: registry/failure names the image alone, so it would
                // fail every proplet waiting for that delivery too. This request's proplet asks again (ours, after
                // PROPLET_CHUNK_STALL) or waits for its timeout.
                Metrics.Failed();
                _ = PublishFailureAsync(app, $"the proxy is busy ({_inFlight.Count} images in flight); try again later");
            }

            return;
        }

        if (request.Chunks is { } missing && RunningFor(app) is { Length: > 0 } running)
        {
            // A re-request (our proplet's, when no chunk came for PROPLET_CHUNK_STALL) for an image whose delivery is
            // under way: served once that delivery ended, from the artefact it leaves in the cache. Started at once it
            // would pull the blob again beside the running pull (every stall, with a new list of missing chunks).
            ProxyLog.AwaitingDelivery(_logger, app);
            Defer(app, missing, binary, running);
            return;
        }

        Admit(flight, new Delivery(app, request.Chunks, have, binary));
    }

    /// <summary>The flight of a delivery of <paramref name="app"/> (<paramref name="chunks"/>: those listed, null: all) in
    /// its format.</summary>
    private static string FlightOf(string app, IEnumerable<int>? chunks, bool binary) =>
        app + (chunks is null ? "" : "\n#" + string.Join(',', chunks.Distinct().Order())) + (binary ? "\n@binary" : "");

    /// <summary>
    /// Re-requests of <paramref name="app"/> in one format waiting for its deliveries under way (<paramref name="running"/>)
    /// to end: one per image and format, the union of the chunks they list. Before, each waited on its own (a task and a
    /// delivery per stall of every proplet, unbounded) and all were served at once, most chunks several times.
    /// </summary>
    private void Defer(string app, IReadOnlyList<int> chunks, bool binary, Task[] running)
    {
        lock (_deferring)
        {
            if (_deferred.TryGetValue((app, binary), out var waiting))
            {
                waiting.UnionWith(chunks);
                return;
            }

            _deferred[(app, binary)] = [.. chunks];
        }

        _ = AdmitAfterAsync(running, app, binary);
    }

    /// <summary>The work of every flight in progress for <paramref name="app"/>, whatever its format, chunks and held
    /// digests.</summary>
    private Task[] RunningFor(string app) => [.. _inFlight.Values.Where(f => f.Delivery.App == app).Select(f => f.Work)];

    /// <summary>Admits the re-requests of <paramref name="app"/> deferred (<see cref="Defer"/>) once
    /// <paramref name="running"/> ended (unless the proxy is stopping).</summary>
    private async Task AdmitAfterAsync(Task[] running, string app, bool binary)
    {
        await Task.WhenAll(running).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // each reports its own failure
        SortedSet<int>? chunks;
        lock (_deferring)
        {
            _deferred.Remove((app, binary), out chunks);
        }

        if (chunks is not null && !_lifetime.IsCancellationRequested)
        {
            Admit(FlightOf(app, chunks, binary), new Delivery(app, [.. chunks], [], binary));
        }
    }

    /// <summary>
    /// Single flight: a request for an image being fetched shares that delivery (the chunks are broadcast to every proplet
    /// on the channel). A request that comes once the delivery has begun publishing would miss the chunks already out
    /// (an original proplet cannot ask for them again, and ours would wait for its stall timer): the flight then runs
    /// once more when it ends, from the cache, for all who came late (one more delivery however many came).
    /// </summary>
    private void Admit(string flight, Delivery delivery)
    {
        while (true)
        {
            var existing = _inFlight.TryGetValue(flight, out var found) ? found : null;
            if (existing is not null && existing.Join(delivery.Have))
            {
                Metrics.Deduplicate();
                ProxyLog.Deduplicated(_logger, delivery.App);
                return;
            }

            // None, or one whose delivery has ended (it refuses requests from then on, see Flight.Ended): a flight of
            // our own, in its place.
            var admitted = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            var next = new Flight(flight, delivery);
            next.Work = ServeWhenAdmittedAsync(admitted.Task, flight, next);
            if (existing is null ? _inFlight.TryAdd(flight, next) : _inFlight.TryUpdate(flight, next, existing))
            {
                existing?.Superseded();
                admitted.SetResult(true);
                return;
            }

            admitted.SetResult(false);
        }
    }

    /// <summary>Serves once registered as <paramref name="flight"/>, ends that flight, and runs it again if requests came
    /// after its publication had begun.</summary>
    private async Task ServeWhenAdmittedAsync(Task<bool> admitted, string flight, Flight state)
    {
        if (!await admitted)
        {
            return;
        }

        Delivery? again = null;
        try
        {
            await ServeAsync(state.Delivery, state);
        }
        finally
        {
            again = state.Close();
            _inFlight.TryRemove(KeyValuePair.Create(flight, state)); // not the flight that may have taken its place
        }

        if (again is not null && !_lifetime.IsCancellationRequested)
        {
            Admit(flight, again);
        }
    }

    private async Task ServeAsync(Delivery delivery, Flight flight)
    {
        var app = delivery.App;
        var token = _lifetime.Token;
        var delivered = false;
        try
        {
            try
            {
                await _fetchSlots.WaitAsync(token);
                try
                {
                    await DeliverAsync(delivery, flight, token);
                    delivered = true;
                }
                finally
                {
                    _fetchSlots.Release();
                }
            }
            finally
            {
                flight.Ended(delivered); // before its failure waits for the others: two failing flights never wait on each other
            }
        }
        catch (RegistryException ex)
        {
            Metrics.Failed();
            ProxyLog.FetchFailed(_logger, app, ex.Message);
            await ReportFailureAsync(flight, ex.Message);
        }
        catch (Exception ex) when (token.IsCancellationRequested && ex is not OutOfMemoryException)
        {
            // Stopping: whatever the cancellation ends the flight with (a publish's timeout or its disposed connection too,
            // which were logged as a crash and counted as a failed delivery).
        }
        catch (Exception ex)
        {
            // Out of memory too (an artefact's array, its chunks): the delivery is given up, logged and reported, and
            // the proxy goes on; before, it vanished unlogged and its proplets waited for their timeout.
            Metrics.Failed();
            ProxyLog.Crashed(_logger, app, ex);
            await ReportFailureAsync(flight, ex is OutOfMemoryException ? $"the proxy ran out of memory delivering {app}: {ex.Message}" : $"the proxy failed to deliver {app}: {ex.Message}");
        }
    }

    /// <summary>
    /// Publishes the chunks <paramref name="delivery"/> asks for (those listed, or all), in its format. From the cache: at
    /// once (JSON: the chunks encoded at the first JSON request, then kept with the artefact). Pulled: each chunk as soon as its bytes have arrived from the registry, except the last, which
    /// waits until the whole artefact matched its digest, so that no proplet, old or new, assembles unverified bytes;
    /// if it does not match, the proplets get <c>registry/failure</c> instead of the last chunk. An image whose sha256
    /// the request's <c>have</c> names: its last chunk only (pulled first if need be, to verify it).
    /// </summary>
    private async Task DeliverAsync(Delivery delivery, Flight flight, CancellationToken cancellationToken)
    {
        var connection = _connection ?? throw new InvalidOperationException("The proxy is not started.");
        var (app, wanted, _, binary, _) = delivery;
        var topic = Topics.Of(_settings.BaseTopic, binary ? Topics.RegistryBinaryChunks : Topics.RegistryChunks);
        var format = binary ? ", binary" : "";

        // Every publication of this delivery starts here; once its first chunk goes out, a request joining the flight
        // needs it to run again. Not before: a pulled artefact's publication is made before the blob is requested, and a
        // request that joins while the blob is still on its way (a slow registry, its retries; our proplet asking again
        // when no chunk came for PROPLET_CHUNK_STALL) gets every chunk of this run.
        ChunkPublication Publish(IChunkPayloads chunks, IReadOnlyList<int>? indices) =>
            new(connection, topic, _settings.Qos, Metrics, _logger, app, chunks, indices, LoseChunk, flight.Publishing, cancellationToken);

        (Artifact Artifact, bool Cached)? resolved = null;
        if (binary && CachedUnderTag(app) is { } guess && !flight.Holds(guess.Sha256))
        {
            // A tag this proxy resolved before, whose artefact is cached: every chunk but the last goes out while the tag
            // is resolved again (a tag may move), the last only once the tag still names that artefact. So the registry's
            // round trip overlaps the publication instead of preceding it, and no proplet completes an assembly of an
            // artefact the tag no longer names: the chunks already out stay an incomplete delivery of the old sha256,
            // which our proplet drops when the new artefact's chunks arrive. Binary deliveries only: they reach only our
            // proplets; an original proplet ignores the sha256 and would assemble old and new chunks into one image.
            var guessed = new BinaryChunks(guess.Data, guess.Sha256, _settings.ChunkSize);
            using var early = Publish(guessed, wanted);
            try
            {
                var resolving = FetchAsync(app, pulling: null, cancellationToken);
                try
                {
                    await early.ReceivedAsync(guess.Data, guess.Data.Length);
                }
                catch
                {
                    // Its failure would go unobserved: the early publication's is the one reported.
                    _ = resolving.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                    throw;
                }

                resolved = await resolving;
                if (resolved.Value.Artifact.Digest == guess.Digest)
                {
                    ProxyLog.Serving(_logger, app, guess.Data.LongLength, guess.Digest, "from the cache, the tag resolved meanwhile" + format, early.Indices.Count, guessed.Layout.Total);
                    await early.FinishAsync();
                    return;
                }
            }
            finally
            {
                await early.DrainAsync(); // the chunks already sent go out before a failure message or the new artefact
            }
        }

        ChunkPublication? streaming = null;
        try
        {
            var (artifact, cached) = resolved ?? await FetchAsync(
                app,
                layer =>
                {
                    if (Sha256Of(layer.Digest) is not { } sha256 || flight.Holds(sha256))
                    {
                        return null; // the chunks' sha256 is known only once the bytes are in; or one chunk will do
                    }

                    IChunkPayloads chunks = binary
                        ? new BinaryChunks(new ChunkLayout(layer.Size, _settings.ChunkSize), sha256)
                        : new ChunkBodies(layer.Size, sha256, _settings.ChunkSize);
                    streaming = Publish(chunks, wanted);
                    ProxyLog.Serving(_logger, app, layer.Size, layer.Digest, "pulled" + format, streaming.Indices.Count, chunks.Layout.Total);
                    return (chunks, streaming.ReceivedAsync);
                },
                cancellationToken);
            if (streaming is null)
            {
                IChunkPayloads chunks = binary ? new BinaryChunks(artifact.Data, artifact.Sha256, _settings.ChunkSize) : JsonChunks(artifact);
                var total = chunks.Layout.Total;
                var announce = wanted is null && flight.Holds(artifact.Sha256);
                streaming = Publish(chunks, announce ? [total - 1] : wanted);
                ProxyLog.Serving(
                    _logger, app, artifact.Data.LongLength, artifact.Digest, (cached ? "from the cache" : "pulled") + (announce ? ", held by the proplet" : "") + format, streaming.Indices.Count, total);
            }

            await streaming.FinishAsync();
        }
        finally
        {
            if (streaming is not null)
            {
                await streaming.DrainAsync(); // the chunks already sent go out before a failure message
                streaming.Dispose();
            }
        }
    }

    /// <summary>The cached artefact that <paramref name="app"/>, a tag reference, named when this proxy last resolved it;
    /// null for a digest reference (its artefact is known without the registry) and a tag not seen or not cached.</summary>
    private Artifact? CachedUnderTag(string app) =>
        ImageReference.TryParse(app, out var reference, out _) && reference.Digest is null
            && _digestsByTag.TryGetValue(reference.ToString(), out var digest) && Cache.TryGet(digest, out var artifact)
            ? artifact
            : null;

    /// <summary><paramref name="artifact"/>'s JSON chunks: those kept with it, else encoded now, kept, and counted by the
    /// cache.</summary>
    private ChunkBodies JsonChunks(Artifact artifact)
    {
        var bodies = artifact.Bodies(_settings.ChunkSize);
        Cache.Remeasure(artifact);
        return bodies;
    }

    /// <summary>
    /// Publishes <paramref name="flight"/>'s failure, unless another delivery of its image delivered: registry/failure
    /// names the image alone, and a proplet fails every assembly of it when one comes (ChunkAssembler.Fail), so a JSON
    /// flight's failure ended a healthy binary flight's delivery. While other flights of the image run, the failure waits
    /// for their ends and is published only if none of them delivered (the busy path's reasoning, <see cref="Handle"/>).
    /// A withheld failure leaves the flight's own proplets without an answer when what delivered was another format's
    /// flight (which they do not read) or a re-request's few chunks: the flight runs once more then (from the cache the
    /// other delivery filled), unless a flight of the same requests took its place meanwhile (its chunks, all published
    /// after this flight ended, reach them) or it is that second run already (its failure, withheld again, is final).
    /// </summary>
    private async Task ReportFailureAsync(Flight flight, string reason)
    {
        var app = flight.Delivery.App;
        var others = _inFlight.Values.Where(f => f != flight && f.Delivery.App == app).Select(f => f.Outcome).ToArray();
        if (others.Length > 0 && (await Task.WhenAll(others)).Any(delivered => delivered))
        {
            ProxyLog.FailureWithheld(_logger, app, reason);
            if (flight.Retry() is { } again && !_lifetime.IsCancellationRequested)
            {
                ProxyLog.DeliveringAgain(_logger, app);
                Admit(flight.Key, again);
            }

            return;
        }

        await PublishFailureAsync(app, reason);
    }

    private async Task PublishFailureAsync(string app, string reason)
    {
        if (_connection is not { } connection)
        {
            return;
        }

        try
        {
            var payload = JsonSerializer.SerializeToUtf8Bytes(new RegistryFailureMessage(app, reason));
            await connection.PublishAsync(Topics.Of(_settings.BaseTopic, Topics.RegistryFailure), payload, _settings.Qos, _lifetime.Token);
        }
        catch (Exception ex) when (ex is TimeoutException or BrokerPublishException or MqttCommunicationException or ObjectDisposedException or OperationCanceledException)
        {
            ProxyLog.FailurePublishFailed(_logger, app, ex.Message);
        }
    }

    /// <summary>What one flight publishes: the image, the chunks listed (null: all), the held digests, the format; whether
    /// it is a failed flight's second run (<see cref="ReportFailureAsync"/>).</summary>
    private sealed record Delivery(string App, IReadOnlyList<int>? Wanted, IReadOnlyList<string> Have, bool Binary, bool Again = false);

    /// <summary>One delivery in flight and the requests it absorbed (see <see cref="Admit"/>), with the images every one
    /// of them holds (their <c>have</c>s in common).</summary>
    private sealed class Flight(string key, Delivery delivery)
    {
        private readonly Lock _lock = new();
        private IReadOnlyList<string> _have = delivery.Have;
        private bool _decided;
        private IReadOnlyList<string>? _again;
        private readonly TaskCompletionSource<bool> _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private bool _closed;
        private bool _superseded;

        /// <summary>Its key in the flight table (<see cref="FlightOf"/>).</summary>
        public string Key { get; } = key;

        public Delivery Delivery { get; } = delivery;

        /// <summary>Whether its delivery delivered, once it has ended (before its failure, if any, is reported).</summary>
        public Task<bool> Outcome => _outcome.Task;

        public Task Work { get; set; } = Task.CompletedTask;

        /// <summary>Its first chunk is about to go out: a request from now on needs the flight to run again.</summary>
        public void Publishing()
        {
            lock (_lock)
            {
                _decided = true;
            }
        }

        /// <summary>Whether every request it serves holds artefact <paramref name="sha256"/> (one chunk will do). Once it
        /// said so, a request joining needs the flight to run again (it may not hold it); while it says not, requests
        /// join as before (one that holds it gets every chunk too).</summary>
        public bool Holds(string sha256)
        {
            lock (_lock)
            {
                var held = Held(_have, sha256);
                _decided |= held;
                return held;
            }
        }

        /// <summary>A request for the same delivery, holding <paramref name="have"/>: absorbed (true), or false when the
        /// flight has ended.</summary>
        public bool Join(IReadOnlyList<string> have)
        {
            lock (_lock)
            {
                if (_closed)
                {
                    return false;
                }

                if (_decided)
                {
                    _again = _again is null ? have : Common(_again, have);
                }
                else
                {
                    _have = Common(_have, have);
                }

                return true;
            }
        }

        /// <summary>Its delivery has ended: from now on it takes no request (one that comes starts a flight in its place;
        /// absorbed, it got no delivery if this one failed before its first chunk).</summary>
        public void Ended(bool delivered)
        {
            lock (_lock)
            {
                _closed = true;
            }

            _outcome.TrySetResult(delivered);
        }

        /// <summary>A flight of the same requests took its place in the table (it had ended).</summary>
        public void Superseded()
        {
            lock (_lock)
            {
                _superseded = true;
            }
        }

        /// <summary>The delivery to run once more for the requests it served, its failure withheld (see
        /// <see cref="ReportFailureAsync"/>); null when a flight took its place or it is a second run already.</summary>
        public Delivery? Retry()
        {
            lock (_lock)
            {
                return _superseded || Delivery.Again ? null : Delivery with { Have = _have, Again = true };
            }
        }

        /// <summary>Ends the flight (before it leaves the table); the delivery to run again for the requests that came once
        /// it had decided (null: none).</summary>
        public Delivery? Close()
        {
            lock (_lock)
            {
                _closed = true;
                return _again is null ? null : Delivery with { Have = _again };
            }
        }

        private static List<string> Common(IReadOnlyList<string> some, IReadOnlyList<string> others) => [.. some.Where(h => Held(others, h))];
    }
}
