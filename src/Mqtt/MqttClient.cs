using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt;

/// <summary>
/// An MQTT 3.1.1/5 client. <see cref="ConnectAsync"/> connects once (and throws <see cref="MqttConnectException"/> when the
/// broker refuses); after that the client reconnects by itself with exponential backoff and jitter, re-subscribes when the
/// broker lost the session, and resends unacknowledged QoS 1/2 publishes (with DUP when the session survived).
/// Received messages are read from <see cref="Messages"/> (bounded: when it is full the client stops reading the socket)
/// unless <see cref="MqttClientOptions.MessageHandler"/> or <see cref="MqttClientOptions.MessageBatchHandler"/> is set. QoS 1/2 messages are acknowledged once they are queued
/// there (or once the handler returned). Do not block the consumer of <see cref="Messages"/> on a QoS 1/2
/// <see cref="PublishAsync(MqttMessage, CancellationToken)"/> while that channel is full: the acknowledgement would sit
/// behind the messages nobody reads.
/// </summary>
public sealed class MqttClient : IAsyncDisposable
{
    private readonly MqttClientOptions _options;
    private readonly ILogger _logger;
    private readonly Channel<MqttMessage> _messages;
    private readonly Lock _sync = new();
    private readonly Dictionary<ushort, PendingOperation> _pending = [];
    private readonly HashSet<ushort> _receivedQos2 = [];
    private readonly Dictionary<string, MqttSubscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly InflightWindow _window;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Channel<Delivery>? _dispatch;
    private readonly CancellationTokenSource _disposing = new();
    private Task? _dispatcher;
    private MqttConnection? _connection;
    private TaskCompletionSource _connectedSignal = NewSignal();
    private CancellationTokenSource? _lifetime;
    private Task? _supervisor;
    private bool _running;
    private bool _disposed;
    private ushort _lastPacketId;
    private long _sequence;
    private int _maxOutgoingPacketSize;
    private int _serverMaximumQos = 2;
    private bool _serverRetainAvailable = true;

    public MqttClient(MqttClientOptions options)
        : this(options, NullLogger<MqttClient>.Instance)
    {
    }

    public MqttClient(MqttClientOptions options, ILogger<MqttClient> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        MqttClientOptions.Validate(options);
        _options = options;
        _logger = logger;
        _window = new InflightWindow(options.MaxInflight);
        _maxOutgoingPacketSize = options.MaxPacketSize;
        ClientId = options.ClientId;
        _messages = Channel.CreateBounded<MqttMessage>(new BoundedChannelOptions(options.ReceiveQueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = false,
            SingleWriter = false,
        });
        if (options.MessageHandler is not null || options.MessageBatchHandler is not null)
        {
            _dispatch = Channel.CreateBounded<Delivery>(new BoundedChannelOptions(options.ReceiveQueueCapacity)
            {
                FullMode = BoundedChannelFullMode.Wait,
                SingleReader = true,
            });
        }
    }

    /// <summary>Received application messages (unless a <see cref="MqttClientOptions.MessageHandler"/> or a batch handler is set).
    /// Completes when the client is disposed.</summary>
    public ChannelReader<MqttMessage> Messages => _messages.Reader;

    public bool IsConnected => Volatile.Read(ref _connection) is not null;

    /// <summary>The client id in use (the broker may assign one on MQTT 5 when the options leave it empty).</summary>
    public string ClientId { get; private set; }

    /// <summary>Connects, waiting for CONNACK. Afterwards the connection is kept up until <see cref="DisconnectAsync"/>.</summary>
    /// <exception cref="MqttConnectException">The broker refused the connection (e.g. bad credentials).</exception>
    /// <exception cref="TimeoutException">No CONNACK within <see cref="MqttClientOptions.ConnectTimeout"/>.</exception>
    /// <exception cref="System.Net.Sockets.SocketException">The broker could not be reached.</exception>
    /// <exception cref="System.Security.Authentication.AuthenticationException">The TLS handshake failed (e.g. an untrusted broker certificate).</exception>
    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_supervisor is { IsCompleted: false })
            {
                throw new InvalidOperationException("The MQTT client is already connected.");
            }

            _window.Open();
            lock (_sync)
            {
                _running = true;
                if (_connectedSignal.Task.IsCompleted)
                {
                    _connectedSignal = NewSignal();
                }
            }

            _lifetime?.Dispose();
            _lifetime = new CancellationTokenSource();
            if (_dispatch is not null && _options.MessageHandler is { } handler)
            {
                // One message at a time: a batch of one.
                _dispatcher ??= Task.Run(() => DispatchBatchLoopAsync(_dispatch.Reader, (messages, token) => handler(messages[0], token), 1, _disposing.Token), _disposing.Token);
            }
            else if (_dispatch is not null && _options.MessageBatchHandler is { } batchHandler)
            {
                _dispatcher ??= Task.Run(() => DispatchBatchLoopAsync(_dispatch.Reader, batchHandler, _options.MaxHandlerBatch, _disposing.Token), _disposing.Token);
            }

            MqttConnection connection;
            try
            {
                connection = await EstablishAsync(cancellationToken);
            }
            catch (Exception ex)
            {
                Stop("The MQTT client could not connect.", ex);
                throw;
            }

            _supervisor = SuperviseAsync(connection, _lifetime.Token);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Sends DISCONNECT, closes the connection and stops reconnecting. Publishes still waiting for an
    /// acknowledgement fail with <see cref="MqttException"/>.</summary>
    public async Task DisconnectAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await StopAsync(cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            try
            {
                await _gate.WaitAsync(timeout.Token);
                try
                {
                    await StopAsync(timeout.Token);
                }
                finally
                {
                    _gate.Release();
                }
            }
            catch (OperationCanceledException)
            {
                // Disposal does not wait for a broker that stopped reading; the connection is dropped.
                Volatile.Read(ref _connection)?.Abort("client disposed");
            }
        }

        _disposed = true;
        _messages.Writer.TryComplete();
        _dispatch?.Writer.TryComplete();
        await _disposing.CancelAsync();
        if (_dispatcher is not null)
        {
            try
            {
                await _dispatcher.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            }
            catch (TimeoutException)
            {
                // A handler that ignores cancellation keeps running on its own; disposal does not wait for it.
            }
        }

        _lifetime?.Dispose();
        _disposing.Dispose();
    }

    public Task PublishAsync(
        string topic,
        ReadOnlyMemory<byte> payload,
        MqttQualityOfService qualityOfService,
        bool retain,
        CancellationToken cancellationToken) =>
        PublishAsync(new MqttMessage { Topic = topic, Payload = payload, QualityOfService = qualityOfService, Retain = retain }, cancellationToken);

    /// <summary>Publishes a message. QoS 0 completes once the message is queued for the socket; QoS 1/2 complete when
    /// the broker acknowledged it (PUBACK, or PUBCOMP) and wait first for a free slot in the in-flight window. While the
    /// client is reconnecting, messages wait and go out on the new connection.</summary>
    /// <exception cref="MqttException">The broker rejected the message (MQTT 5 reason code), or the client is not connected.</exception>
    public async Task PublishAsync(MqttMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateMessage(message);
        var qos = message.QualityOfService;
        var packet = new MqttPacket.Publish(
            message.Topic,
            message.Payload,
            qos,
            message.Retain,
            Dup: false,
            PacketId: 0,
            _options.ProtocolVersion == MqttProtocolVersion.V500 ? ToProperties(message) : null);

        if (qos == MqttQualityOfService.AtMostOnce)
        {
            while (true)
            {
                var connection = await GetConnectionAsync(cancellationToken);
                if (await connection.SendAsync(packet))
                {
                    MqttMetrics.MessagesPublished.Add(1);
                    return;
                }
            }
        }

        // Taking a window slot, getting the packet id and handing the packet to the connection (which fixes its place on
        // the wire) happen under one lock, so QoS 1/2 messages leave in the order their slots were granted: the window
        // serves waiters first in, first out, and a granted waiter continues synchronously on the releasing thread.
        var operation = new PendingOperation(
            qos == MqttQualityOfService.AtLeastOnce ? PendingStage.AwaitPubAck : PendingStage.AwaitPubRec,
            packet,
            0);
        MqttConnection? target = null;
        ValueTask slot;
        lock (_sync)
        {
            if (!_running)
            {
                throw new MqttException("The MQTT client is not connected.");
            }

            slot = _window.AcquireAsync(cancellationToken);
            if (slot.IsCompletedSuccessfully)
            {
                target = StartPublishUnderLock(operation);
            }
        }

        if (!slot.IsCompletedSuccessfully)
        {
            await slot;
            lock (_sync)
            {
                if (_running)
                {
                    target = StartPublishUnderLock(operation);
                }
            }

            if (!operation.Started)
            {
                _window.Release();
                throw new MqttException("The MQTT client is not connected.");
            }
        }

        if (target is not null)
        {
            await target.FlushDeferredAsync();
        }
        await operation.Completion.Task.WaitAsync(cancellationToken);
        MqttMetrics.MessagesPublished.Add(1);
    }

    public Task<IReadOnlyList<MqttQualityOfService>> SubscribeAsync(
        string topicFilter,
        MqttQualityOfService qualityOfService,
        CancellationToken cancellationToken) =>
        SubscribeAsync([new MqttSubscription(topicFilter, qualityOfService)], cancellationToken);

    /// <summary>Subscribes and returns the QoS the broker granted per filter. The subscriptions are remembered and
    /// renewed after a reconnect that lost the session.</summary>
    /// <exception cref="MqttException">The broker refused a subscription.</exception>
    public async Task<IReadOnlyList<MqttQualityOfService>> SubscribeAsync(
        IReadOnlyList<MqttSubscription> subscriptions,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(subscriptions);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (subscriptions.Count == 0)
        {
            throw new ArgumentException("At least one subscription is required.", nameof(subscriptions));
        }

        foreach (var subscription in subscriptions)
        {
            MqttTopic.ValidateTopicFilter(subscription.TopicFilter, nameof(subscriptions));
        }

        lock (_sync)
        {
            foreach (var subscription in subscriptions)
            {
                _subscriptions[subscription.TopicFilter] = subscription;
            }
        }

        var entries = subscriptions.Select(ToEntry).ToList();
        var response = (MqttPacket.SubAck)await RequestUntilAnsweredAsync(id => new MqttPacket.Subscribe(id, entries, null), cancellationToken);
        if (response.ReasonCodes.Length != entries.Count)
        {
            throw new MqttException($"SUBACK carries {response.ReasonCodes.Length} reason codes for {entries.Count} topic filters.");
        }

        var granted = new MqttQualityOfService[entries.Count];
        for (var i = 0; i < entries.Count; i++)
        {
            var code = response.ReasonCodes[i];
            if (code >= 0x80)
            {
                lock (_sync)
                {
                    _subscriptions.Remove(subscriptions[i].TopicFilter);
                }

                throw new MqttException($"The broker refused the subscription to '{subscriptions[i].TopicFilter}' (reason code 0x{code:X2}).", code);
            }

            granted[i] = (MqttQualityOfService)code;
        }

        return granted;
    }

    public Task UnsubscribeAsync(string topicFilter, CancellationToken cancellationToken) =>
        UnsubscribeAsync([topicFilter], cancellationToken);

    public async Task UnsubscribeAsync(IReadOnlyList<string> topicFilters, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topicFilters);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (topicFilters.Count == 0)
        {
            throw new ArgumentException("At least one topic filter is required.", nameof(topicFilters));
        }

        foreach (var filter in topicFilters)
        {
            MqttTopic.ValidateTopicFilter(filter, nameof(topicFilters));
        }

        lock (_sync)
        {
            foreach (var filter in topicFilters)
            {
                _subscriptions.Remove(filter);
            }
        }

        var filters = topicFilters.ToList();
        var response = (MqttPacket.UnsubAck)await RequestUntilAnsweredAsync(id => new MqttPacket.Unsubscribe(id, filters, null), cancellationToken);
        foreach (var code in response.ReasonCodes)
        {
            if (code >= 0x80)
            {
                throw new MqttException($"The broker refused to unsubscribe (reason code 0x{code:X2}).", code);
            }
        }
    }

    /// <summary>Drops the network connection without DISCONNECT, as a crash or a cut cable would (the broker then
    /// publishes the Last Will). Used by tests.</summary>
    internal void AbortConnection() => Volatile.Read(ref _connection)?.Abort("aborted");

    internal int InflightCount => _window.InUse;

    internal static MqttProperties? ToProperties(MqttMessage message)
    {
        if (message.MessageExpiryInterval is null && message.PayloadIsUtf8 is null && message.ContentType is null
            && message.ResponseTopic is null && message.CorrelationData is null && message.UserProperties.Count == 0)
        {
            return null;
        }

        return new MqttProperties
        {
            MessageExpiryInterval = message.MessageExpiryInterval,
            PayloadFormatIndicator = message.PayloadIsUtf8 is { } utf8 ? (utf8 ? (byte)1 : (byte)0) : null,
            ContentType = message.ContentType,
            ResponseTopic = message.ResponseTopic,
            CorrelationData = message.CorrelationData?.ToArray(),
            UserProperties = message.UserProperties.Count == 0 ? null : [.. message.UserProperties],
        };
    }

    internal static TimeSpan ComputeBackoff(int attempt, TimeSpan initial, TimeSpan maximum, double random)
    {
        var factor = Math.Pow(2, Math.Min(attempt, 30));
        var ceiling = Math.Min(maximum.TotalMilliseconds, initial.TotalMilliseconds * factor);
        // "Equal jitter": half the delay is fixed, half random, so reconnecting clients spread out but never hammer.
        return TimeSpan.FromMilliseconds((ceiling / 2) + (ceiling / 2 * random));
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private static MqttPacket.SubscribeEntry ToEntry(MqttSubscription s) =>
        new(s.TopicFilter, (byte)((int)s.QualityOfService | (s.NoLocal ? 0x04 : 0) | (s.RetainAsPublished ? 0x08 : 0) | ((s.RetainHandling & 0x03) << 4)));

    private void ValidateMessage(MqttMessage message)
    {
        MqttTopic.ValidateTopicName(message.Topic, nameof(message));
        if (message.QualityOfService is < MqttQualityOfService.AtMostOnce or > MqttQualityOfService.ExactlyOnce)
        {
            throw new ArgumentException("Invalid QoS.", nameof(message));
        }

        if (message.ResponseTopic is not null)
        {
            MqttTopic.ValidateTopicName(message.ResponseTopic, nameof(message));
        }

        var longest = 0;
        var size = 16L + message.Payload.Length + (message.CorrelationData?.Length ?? 0)
            + Utf8Length(message.Topic, ref longest) + Utf8Length(message.ContentType, ref longest) + Utf8Length(message.ResponseTopic, ref longest);
        foreach (var (name, value) in message.UserProperties)
        {
            size += 5 + Utf8Length(name, ref longest) + Utf8Length(value, ref longest);
        }

        if (longest > ushort.MaxValue)
        {
            throw new ArgumentException("MQTT strings are limited to 65,535 UTF-8 bytes.", nameof(message));
        }

        if (message.CorrelationData?.Length > ushort.MaxValue)
        {
            throw new ArgumentException("Correlation data is limited to 65,535 bytes.", nameof(message));
        }

        if (size > Volatile.Read(ref _maxOutgoingPacketSize))
        {
            throw new ArgumentException($"The message ({size} bytes) exceeds the maximum packet size {_maxOutgoingPacketSize}.", nameof(message));
        }

        if ((int)message.QualityOfService > Volatile.Read(ref _serverMaximumQos))
        {
            throw new MqttException($"The broker accepts at most QoS {_serverMaximumQos}.");
        }

        if (message.Retain && !Volatile.Read(ref _serverRetainAvailable))
        {
            throw new MqttException("The broker does not support retained messages.");
        }

        static int Utf8Length(string? value, ref int longest)
        {
            var length = value is null ? 0 : Encoding.UTF8.GetByteCount(value);
            longest = Math.Max(longest, length);
            return length;
        }
    }

    /// <summary>Gives a publish that holds a window slot its packet id and places it on the current connection (if
    /// any; otherwise it goes out on the next one). Runs under <c>_sync</c>, so the packet is only encoded or queued
    /// here, never flushed; the caller flushes after leaving the lock.</summary>
    private MqttConnection? StartPublishUnderLock(PendingOperation operation)
    {
        var id = AllocatePacketId();
        operation.Start(id, ++_sequence);
        _pending[id] = operation;
        var current = _connection;
        operation.Sent = current is not null;
        if (current is null)
        {
            return null;
        }

        var queued = current.SendAsync(operation.Publish!, deferFlush: true);
        if (queued.IsCompleted)
        {
            // False means the connection just ended; the publish stays pending and is resent on the next one.
            _ = queued.Result;
        }
        else
        {
            // The send queue is full: waiting is done off the lock (the packet's place may then follow later sends).
            _ = WaitQueuedAsync(queued);
        }

        return current;
    }

    private static async Task WaitQueuedAsync(ValueTask<bool> queued) => await queued;

    private ushort AllocatePacketId()
    {
        for (var i = 0; i < ushort.MaxValue; i++)
        {
            _lastPacketId = _lastPacketId == ushort.MaxValue ? (ushort)1 : (ushort)(_lastPacketId + 1);
            if (!_pending.ContainsKey(_lastPacketId))
            {
                return _lastPacketId;
            }
        }

        throw new MqttException("No free MQTT packet identifier.");
    }

    private ValueTask<MqttConnection> GetConnectionAsync(CancellationToken cancellationToken)
    {
        lock (_sync)
        {
            if (_connection is { } connection)
            {
                return new ValueTask<MqttConnection>(connection);
            }
        }

        return WaitForConnectionAsync(cancellationToken);
    }

    private async ValueTask<MqttConnection> WaitForConnectionAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task signal;
            lock (_sync)
            {
                if (_connection is { } connection)
                {
                    return connection;
                }

                if (!_running)
                {
                    throw new MqttException("The MQTT client is not connected.");
                }

                signal = _connectedSignal.Task;
            }

            await signal.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Sends a SUBSCRIBE/UNSUBSCRIBE and waits for its answer, sending it again on the next connection if
    /// this one is lost first.</summary>
    private async Task<MqttPacket> RequestUntilAnsweredAsync(Func<ushort, MqttPacket> build, CancellationToken cancellationToken)
    {
        while (true)
        {
            var connection = await GetConnectionAsync(cancellationToken);
            var answer = await RequestAsync(connection, build, cancellationToken);
            if (answer is not null)
            {
                return answer;
            }
        }
    }

    /// <summary>One request/answer exchange on one connection; null when the connection ended first.</summary>
    private async Task<MqttPacket?> RequestAsync(MqttConnection connection, Func<ushort, MqttPacket> build, CancellationToken cancellationToken)
    {
        ushort id;
        var probe = build(1);
        var operation = new PendingOperation(probe is MqttPacket.Subscribe ? PendingStage.AwaitSubAck : PendingStage.AwaitUnsubAck, null, 0);
        lock (_sync)
        {
            id = AllocatePacketId();
            _pending[id] = operation;
        }

        try
        {
            if (!await connection.SendAsync(build(id)))
            {
                return null;
            }

            var finished = await Task.WhenAny(operation.Completion.Task, connection.Closed).WaitAsync(cancellationToken);
            return finished == operation.Completion.Task ? await operation.Completion.Task : null;
        }
        finally
        {
            lock (_sync)
            {
                if (_pending.TryGetValue(id, out var current) && current == operation)
                {
                    _pending.Remove(id);
                }
            }
        }
    }

    private async Task<MqttConnection> EstablishAsync(CancellationToken cancellationToken)
    {
        var connection = await MqttConnection.OpenAsync(_options, _logger, cancellationToken);
        try
        {
            var connAck = connection.ConnAck;
            var sessionPresent = connAck.SessionPresent;
            var server = connAck.Properties;
            if (server?.AssignedClientIdentifier is { } assigned)
            {
                ClientId = assigned;
            }

            Volatile.Write(ref _maxOutgoingPacketSize, (int)Math.Min(_options.MaxPacketSize, server?.MaximumPacketSize ?? uint.MaxValue));
            Volatile.Write(ref _serverMaximumQos, server?.MaximumQos ?? 2);
            Volatile.Write(ref _serverRetainAvailable, server?.RetainAvailable != 0);
            _window.SetLimit(Math.Min(_options.MaxInflight, server?.ReceiveMaximum ?? ushort.MaxValue));
            if (!sessionPresent)
            {
                lock (_sync)
                {
                    _receivedQos2.Clear();
                }
            }

            connection.Start(HandlePacketAsync, OnConnectionLost);
            if (!sessionPresent)
            {
                await ResubscribeAsync(connection, cancellationToken);
            }

            List<PendingOperation> settled;
            int resent;
            lock (_sync)
            {
                if (!_running)
                {
                    throw new OperationCanceledException("The MQTT client was stopped while connecting.");
                }

                if (connection.Closed.IsCompleted)
                {
                    throw new MqttException("The MQTT connection ended while it was being set up.");
                }

                // Unacknowledged publishes go out first, in their original order, before any new publish can reach this
                // connection (new ones need _connection, published only below in the same lock).
                (resent, settled) = ResendUnderLock(connection, sessionPresent);
                Volatile.Write(ref _connection, connection);
                _connectedSignal.TrySetResult();
            }

            foreach (var operation in settled)
            {
                _window.Release();
                operation.Completion.TrySetResult(null);
            }

            await connection.FlushDeferredAsync();
            if (resent > 0)
            {
                MqttMetrics.Retransmissions.Add(resent);
                MqttLog.Retransmitted(_logger, resent);
            }

            MqttMetrics.Connects.Add(1);
            MqttLog.Connected(_logger, _options.Host, _options.Port, ClientId, connection.Version, sessionPresent);
            if (_options.Connected is { } connected)
            {
                _ = NotifyConnectedAsync(connected, sessionPresent);
            }

            return connection;
        }
        catch
        {
            connection.Abort("connect failed");
            throw;
        }
    }

    private async Task NotifyConnectedAsync(Func<bool, CancellationToken, Task> connected, bool sessionPresent)
    {
        try
        {
            await Task.Yield();
            await connected(sessionPresent, _disposing.Token);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_disposing.IsCancellationRequested)
        {
            MqttLog.ConnectedCallbackFailed(_logger, ex);
        }
        catch (OperationCanceledException)
        {
            // disposed meanwhile
        }
    }

    private async Task ResubscribeAsync(MqttConnection connection, CancellationToken cancellationToken)
    {
        List<MqttPacket.SubscribeEntry> entries;
        lock (_sync)
        {
            entries = [.. _subscriptions.Values.Select(ToEntry)];
        }

        if (entries.Count == 0)
        {
            return;
        }

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.ConnectTimeout);
            foreach (var chunk in entries.Chunk(64))
            {
                var answer = await RequestAsync(connection, id => new MqttPacket.Subscribe(id, chunk, null), timeout.Token)
                    ?? throw new MqttException("The connection ended during re-subscription.");
                if (answer is MqttPacket.SubAck { ReasonCodes: var codes } && codes.Any(c => c >= 0x80))
                {
                    throw new MqttException("The broker refused a re-subscription.");
                }
            }

            MqttLog.Resubscribed(_logger, entries.Count);
        }
        catch (Exception ex) when (ex is MqttException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            MqttLog.ResubscribeFailed(_logger, ex);
            connection.Abort("re-subscription failed");
            throw new MqttException("Re-subscription failed.", ex);
        }
    }

    /// <summary>Places every unacknowledged publish on the new connection, oldest first: the PUBLISH again (with DUP
    /// when the broker kept the session and had it before), or PUBREL when the broker already acknowledged it with
    /// PUBREC. When the broker lost the session, PUBREC'd messages are settled (returned; the caller completes them).
    /// Runs under <c>_sync</c>; sends are encoded or queued, never awaited (the caller flushes).</summary>
    private (int Resent, List<PendingOperation> Settled) ResendUnderLock(MqttConnection connection, bool sessionPresent)
    {
        var settled = new List<PendingOperation>();
        var resent = 0;
        foreach (var operation in _pending.Values.Where(p => p.IsPublish).OrderBy(p => p.Sequence).ToList())
        {
            var id = operation.Publish!.PacketId;
            MqttPacket packet;
            if (operation.Stage == PendingStage.AwaitPubComp)
            {
                if (!sessionPresent)
                {
                    _pending.Remove(id);
                    settled.Add(operation);
                    continue;
                }

                packet = new MqttPacket.PublishAck(MqttPacketType.PubRel, id, 0, null);
            }
            else
            {
                packet = sessionPresent && operation.Sent ? operation.Publish with { Dup = true } : operation.Publish;
                operation.Sent = true;
            }

            resent++;
            var queued = connection.SendAsync(packet, deferFlush: true);
            if (!queued.IsCompleted)
            {
                // The send queue is full: the rest waits off the lock (it still goes out before new publishes).
                _ = WaitQueuedAsync(queued);
            }
        }

        return (resent, settled);
    }

    private async Task SuperviseAsync(MqttConnection connection, CancellationToken cancellationToken)
    {
        while (true)
        {
            var reason = await connection.Closed;
            OnConnectionLost(connection);
            bool running;
            lock (_sync)
            {
                running = _running;
            }

            if (!running || cancellationToken.IsCancellationRequested)
            {
                return;
            }

            MqttMetrics.ConnectionsLost.Add(1);
            MqttLog.ConnectionLost(_logger, _options.Host, _options.Port, reason);
            if (!_options.AutoReconnect)
            {
                Stop($"The MQTT connection was lost ({reason}) and auto-reconnect is off.");
                return;
            }

            for (var attempt = 0; ; attempt++)
            {
                var delay = ComputeBackoff(attempt, _options.ReconnectDelay, _options.MaxReconnectDelay, Random.Shared.NextDouble());
                try
                {
                    await Task.Delay(delay, cancellationToken);
                    connection = await EstablishAsync(cancellationToken);
                    break;
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    var next = ComputeBackoff(attempt + 1, _options.ReconnectDelay, _options.MaxReconnectDelay, 1.0);
                    MqttLog.ReconnectFailed(_logger, attempt + 1, _options.Host, _options.Port, (long)next.TotalMilliseconds, ex);
                }
            }
        }
    }

    private void OnConnectionLost(MqttConnection connection)
    {
        lock (_sync)
        {
            if (_connection == connection)
            {
                Volatile.Write(ref _connection, null);
                if (_connectedSignal.Task.IsCompleted)
                {
                    _connectedSignal = NewSignal();
                }
            }
        }
    }

    /// <summary>Marks the client stopped and fails everything still waiting, each with its own exception (a shared
    /// instance would grow a stack trace with every await that rethrows it).</summary>
    private void Stop(string reason, Exception? cause = null)
    {
        MqttException Error() => cause is null ? new MqttException(reason) : new MqttException(reason, cause);
        _window.Close(Error);
        List<PendingOperation> failed;
        lock (_sync)
        {
            _running = false;
            Volatile.Write(ref _connection, null);
            // Waiters for a connection wake up, see that the client stopped, and throw their own exception.
            _connectedSignal.TrySetResult();
            failed = [.. _pending.Values];
            _pending.Clear();
        }

        foreach (var operation in failed)
        {
            operation.Completion.TrySetException(Error());
        }
    }

    private async Task StopAsync(CancellationToken cancellationToken)
    {
        MqttConnection? connection;
        lock (_sync)
        {
            connection = _connection;
            _running = false;
        }

        if (_lifetime is not null)
        {
            await _lifetime.CancelAsync();
        }

        try
        {
            if (connection is not null)
            {
                // CloseAsync aborts the connection even when the token ends the wait for the DISCONNECT to flush.
                await connection.CloseAsync(new MqttPacket.Disconnect(0, null), "closed by the client", cancellationToken);
                MqttLog.Disconnected(_logger, _options.Host, _options.Port);
            }
        }
        finally
        {
            if (_supervisor is not null)
            {
                // The supervisor never throws: it ends once it sees the client stopped or its lifetime cancelled.
                await _supervisor;
                _supervisor = null;
            }

            Stop("The MQTT client was disconnected.");
        }
    }

    private async ValueTask HandlePacketAsync(MqttConnection connection, MqttPacket packet, CancellationToken cancellationToken)
    {
        switch (packet)
        {
            case MqttPacket.Publish publish:
                await OnPublishAsync(connection, publish, cancellationToken);
                break;
            case MqttPacket.PublishAck { Kind: MqttPacketType.PubAck } ack:
                CompletePublish(ack, PendingStage.AwaitPubAck);
                break;
            case MqttPacket.PublishAck { Kind: MqttPacketType.PubRec } ack:
                await OnPubRecAsync(connection, ack);
                break;
            case MqttPacket.PublishAck { Kind: MqttPacketType.PubComp } ack:
                CompletePublish(ack, PendingStage.AwaitPubComp);
                break;
            case MqttPacket.PublishAck { Kind: MqttPacketType.PubRel } ack:
                bool known;
                lock (_sync)
                {
                    known = _receivedQos2.Remove(ack.PacketId);
                }

                var code = known || connection.Version == MqttProtocolVersion.V311 ? (byte)0 : (byte)0x92;
                await connection.SendAsync(new MqttPacket.PublishAck(MqttPacketType.PubComp, ack.PacketId, code, null));
                break;
            case MqttPacket.SubAck subAck:
                CompleteRequest(subAck.PacketId, PendingStage.AwaitSubAck, subAck);
                break;
            case MqttPacket.UnsubAck unsubAck:
                CompleteRequest(unsubAck.PacketId, PendingStage.AwaitUnsubAck, unsubAck);
                break;
            case MqttPacket.PingResp:
                break;
            case MqttPacket.Disconnect disconnect:
                MqttLog.ServerDisconnect(_logger, _options.Host, _options.Port, disconnect.ReasonCode, disconnect.Properties?.ReasonString);
                connection.Abort($"the broker sent DISCONNECT (reason code 0x{disconnect.ReasonCode:X2})");
                break;
            default:
                await connection.FailAsync($"unexpected {packet.Type} from the broker", 0x82);
                break;
        }
    }

    private async ValueTask OnPublishAsync(MqttConnection connection, MqttPacket.Publish publish, CancellationToken cancellationToken)
    {
        if (!connection.TopicAliases.TryResolve(publish.Topic, publish.Properties?.TopicAlias, out var topic, out var error))
        {
            await connection.FailAsync(error!, 0x94);
            return;
        }

        var properties = publish.Properties;
        var message = new MqttMessage
        {
            Topic = topic,
            Payload = publish.Payload,
            QualityOfService = publish.Qos,
            Retain = publish.Retain,
            MessageExpiryInterval = properties?.MessageExpiryInterval,
            PayloadIsUtf8 = properties?.PayloadFormatIndicator is { } format ? format == 1 : null,
            ContentType = properties?.ContentType,
            ResponseTopic = properties?.ResponseTopic,
            CorrelationData = properties?.CorrelationData,
            UserProperties = properties?.UserProperties ?? (IReadOnlyList<MqttUserProperty>)[],
            SubscriptionIdentifiers = properties?.SubscriptionIdentifiers ?? (IReadOnlyList<uint>)[],
        };

        switch (publish.Qos)
        {
            case MqttQualityOfService.AtMostOnce:
                await DeliverAsync(connection, message, null, cancellationToken);
                break;
            case MqttQualityOfService.AtLeastOnce:
                await DeliverAsync(connection, message, new MqttPacket.PublishAck(MqttPacketType.PubAck, publish.PacketId, 0, null), cancellationToken);
                break;
            default:
                var pubRec = new MqttPacket.PublishAck(MqttPacketType.PubRec, publish.PacketId, 0, null);
                bool duplicate;
                lock (_sync)
                {
                    duplicate = _receivedQos2.Contains(publish.PacketId);
                }

                if (duplicate)
                {
                    MqttMetrics.DuplicatesSuppressed.Add(1);
                    MqttLog.DuplicateSuppressed(_logger, publish.PacketId);
                    await connection.SendAsync(pubRec);
                    break;
                }

                // Recorded only once the message is queued: if the connection dies first, the redelivery must get through.
                await DeliverAsync(connection, message, pubRec, cancellationToken);
                lock (_sync)
                {
                    _receivedQos2.Add(publish.PacketId);
                }

                break;
        }
    }

    /// <summary>Hands a message to the application and acknowledges it: at once after it is queued in
    /// <see cref="Messages"/>, or after the handler returned. The handler runs on its own loop, not on the reader
    /// loop, so a handler may publish at QoS 1/2 and wait for the acknowledgement.</summary>
    private async ValueTask DeliverAsync(MqttConnection connection, MqttMessage message, MqttPacket? ack, CancellationToken cancellationToken)
    {
        if (_dispatch is not null)
        {
            await _dispatch.Writer.WriteAsync(new Delivery(message, connection, ack), cancellationToken);
            return;
        }

        await _messages.Writer.WriteAsync(message, cancellationToken);
        MqttMetrics.MessagesReceived.Add(1);
        if (ack is not null)
        {
            await connection.SendAsync(ack);
        }
    }

    private async Task DispatchBatchLoopAsync(
        ChannelReader<Delivery> deliveries,
        Func<IReadOnlyList<MqttMessage>, CancellationToken, ValueTask> handler,
        int maxBatch,
        CancellationToken cancellationToken)
    {
        var batch = new List<Delivery>(maxBatch);
        var messages = new List<MqttMessage>(maxBatch);
        try
        {
            while (await deliveries.WaitToReadAsync(cancellationToken))
            {
                while (batch.Count < maxBatch && deliveries.TryRead(out var delivery))
                {
                    batch.Add(delivery);
                    messages.Add(delivery.Message);
                }

                try
                {
                    await handler(messages, cancellationToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    MqttLog.HandlerFailed(_logger, messages[0].Topic, ex);
                }

                MqttMetrics.MessagesReceived.Add(batch.Count);
                foreach (var delivery in batch)
                {
                    if (delivery.Ack is not null)
                    {
                        // On a connection that has ended this is a no-op; the broker redelivers on the next one.
                        await delivery.Connection.SendAsync(delivery.Ack);
                    }
                }

                batch.Clear();
                messages = new List<MqttMessage>(maxBatch); // the handler may have kept the list
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Disposed.
        }
    }

    private void CompletePublish(MqttPacket.PublishAck ack, PendingStage expected)
    {
        PendingOperation? operation;
        lock (_sync)
        {
            if (!_pending.TryGetValue(ack.PacketId, out operation) || operation.Stage != expected)
            {
                operation = null;
            }
            else
            {
                _pending.Remove(ack.PacketId);
            }
        }

        if (operation is null)
        {
            MqttLog.UnknownPacketId(_logger, ack.Kind.ToString(), ack.PacketId);
            return;
        }

        _window.Release();
        if (ack.ReasonCode >= 0x80)
        {
            operation.Completion.TrySetException(new MqttException(
                $"The broker rejected the publish to '{operation.Publish!.Topic}' (reason code 0x{ack.ReasonCode:X2}).",
                ack.ReasonCode));
        }
        else
        {
            operation.Completion.TrySetResult(ack);
        }
    }

    private async ValueTask OnPubRecAsync(MqttConnection connection, MqttPacket.PublishAck ack)
    {
        PendingOperation? operation;
        var failed = false;
        lock (_sync)
        {
            if (_pending.TryGetValue(ack.PacketId, out operation) && operation.Stage is PendingStage.AwaitPubRec or PendingStage.AwaitPubComp)
            {
                if (ack.ReasonCode >= 0x80)
                {
                    _pending.Remove(ack.PacketId);
                    failed = true;
                }
                else
                {
                    operation.Stage = PendingStage.AwaitPubComp;
                }
            }
            else
            {
                operation = null;
            }
        }

        if (failed)
        {
            _window.Release();
            operation!.Completion.TrySetException(new MqttException(
                $"The broker rejected the publish to '{operation.Publish!.Topic}' (reason code 0x{ack.ReasonCode:X2}).",
                ack.ReasonCode));
            return;
        }

        var code = operation is null && connection.Version == MqttProtocolVersion.V500 ? (byte)0x92 : (byte)0;
        await connection.SendAsync(new MqttPacket.PublishAck(MqttPacketType.PubRel, ack.PacketId, code, null));
    }

    private void CompleteRequest(ushort packetId, PendingStage expected, MqttPacket answer)
    {
        PendingOperation? operation;
        lock (_sync)
        {
            if (_pending.TryGetValue(packetId, out operation) && operation.Stage == expected)
            {
                _pending.Remove(packetId);
            }
            else
            {
                operation = null;
            }
        }

        if (operation is null)
        {
            MqttLog.UnknownPacketId(_logger, answer.Type.ToString(), packetId);
            return;
        }

        operation.Completion.TrySetResult(answer);
    }
}
