using System.Buffers;
using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet;
using MQTTnet.Adapter;
using MQTTnet.Exceptions;
using MQTTnet.Protocol;

namespace Propeller.Broker;

/// <summary>
/// One connection to the broker over an MQTTnet <see cref="IMqttClient"/>, with what MQTTnet 5 leaves to its user
/// (docs/adr/0008-mqttnet.md; the pitfalls in libraries.md):
/// <list type="bullet">
/// <item>Reconnects with backoff and jitter from <c>DisconnectedAsync</c> (one loop of its own: a failed connect raises
/// that event again), and subscribes again when the broker kept no session (or kept one that may hold
/// <see cref="BrokerOptions.StaleSubscriptions"/>). A subscription refused or unanswered then fails the connect, which
/// is closed and made again after the backoff.</item>
/// <item>A publish made while disconnected waits for the connection, bounded by
/// <see cref="BrokerOptions.OperationTimeout"/>; QoS 1/2 publishes in flight stay below the broker's Receive Maximum;
/// every result is checked: QuotaExceeded and a connection lost mid-publish are retried, any other refusal throws.</item>
/// <item>Publishes with the same order key go one after the other, at every QoS (MQTTnet sends the PUBRELs of concurrent
/// QoS 2 publishes out of order and mosquitto delivers on PUBREL; a publish sent again after a lost connection goes out
/// behind those called meanwhile).</item>
/// <item>Received messages are acknowledged by hand: handed to <see cref="Handler"/> in batches of what has arrived, in
/// order, and acknowledged in arrival order after the handler returned. The handler may process different keys in
/// parallel; it must be idempotent (QoS 2 is not exactly-once to it: a connection lost before the acknowledgement
/// delivers the message again).</item>
/// </list>
/// </summary>
public sealed class BrokerConnection : IAsyncDisposable
{
    private readonly BrokerOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly IMqttClient _client;
    private readonly MqttClientOptions _clientOptions;
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>How often a delivery waiting for room in a full receive queue checks that its connection is still up.</summary>
    private static readonly TimeSpan ConnectionCheck = TimeSpan.FromMilliseconds(100);
    private readonly Channel<bool> _reconnect = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Channel<Delivery> _received;
    private readonly Channel<Send> _sends = Channel.CreateUnbounded<Send>(new UnboundedChannelOptions { SingleReader = true });
    private readonly InflightWindow _window;
    private readonly KeyedOrder _publishOrder = new();
    private readonly Lock _gate = new();
    private TaskCompletionSource _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _connectLoop = Task.CompletedTask;
    private Task _dispatchLoop = Task.CompletedTask;
    private Task _sendLoop = Task.CompletedTask;
    private int _windowTarget;
    private long _generation;
    private int _attempting;
    private long _connectedAt;

    /// <summary>1 once a connection made was lost and <see cref="BrokerOptions.ReconnectAfterLoss"/> is false: no more
    /// attempts.</summary>
    private int _lostForGood;

    /// <summary>The Maximum Packet Size the broker announced at the last connect (MQTT 5 CONNACK); 0: none.</summary>
    private long _brokerMaximumPacketSize;

    /// <summary>How many connections in a row ended sooner than <see cref="BrokerOptions.StableConnection"/> after they were made.</summary>
    private int _shortLived;
    private int _started;
    private int _disposed;
    private int _queuedSends;

    /// <summary>
    /// The broker's session may lack some of the subscriptions (the connect loop only): until this process's first
    /// renewal succeeded (a kept session is what an earlier process, maybe an older version with other filters, or one
    /// whose renewal failed, left behind), and after a renewal failed.
    /// </summary>
    private bool _subscriptionsUnsure = true;

    /// <summary>
    /// The filter and reason code of the subscription the broker refused at the last connect that subscribed (null once a
    /// renewal succeeded): why the connection is not ready, for a health check to say.
    /// </summary>
    public string? RefusedSubscription { get; private set; }

    public BrokerConnection(BrokerOptions options, ILogger? logger = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _time = time ?? TimeProvider.System;
        _windowTarget = options.MaxInflight;
        _window = new InflightWindow(options.MaxInflight, _stopping.Token);
        _received = Channel.CreateBounded<Delivery>(new BoundedChannelOptions(options.ReceiveQueueCapacity) { SingleReader = true, SingleWriter = true });
        _clientOptions = BuildClientOptions(options);
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnReceivedAsync;
        _client.DisconnectedAsync += OnDisconnectedAsync;
    }

    /// <summary>Where received messages go, in batches of what has arrived (at most <see cref="BrokerOptions.MaxBatch"/>),
    /// in order; the batch is acknowledged, in order, after it returns (also when it threw: the exception is logged).
    /// Set before <see cref="StartAsync"/>; without it messages are acknowledged unread.</summary>
    public Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask>? Handler { get; set; }

    /// <summary>Called after every connect (argument: whether the broker kept the session), once subscriptions are
    /// renewed, off the connection loop; an exception is logged.</summary>
    public Func<bool, CancellationToken, Task>? Connected { get; set; }

    public bool IsConnected => _connected.Task.IsCompleted && _client.IsConnected;

    /// <summary>
    /// How long the oldest received message whose handler has not returned has waited since it arrived (zero when none
    /// waits): what arrived since then may not have been handled, so a node judges what it heard only up to then.
    /// </summary>
    public TimeSpan UnhandledFor => Volatile.Read(ref _oldestUnhandled) is var arrived and not 0 ? Stopwatch.GetElapsedTime(arrived) : TimeSpan.Zero;

    public BrokerOptions Options => _options;

    /// <summary>The connect loop (tests: it ends once the connection stops for good).</summary>
    internal Task ConnectLoop => _connectLoop;

    /// <summary>Publishes queued for the send loop (tests: what an outage holds).</summary>
    internal int QueuedSends => Volatile.Read(ref _queuedSends);

    /// <summary>Whether the broker offered shared subscriptions at the last connect (MQTT 5 only; see
    /// <see cref="BrokerOptions.Subscribing"/>).</summary>
    public bool SharedSubscriptionsAvailable { get; private set; }

    /// <summary>Dispose closes the socket without DISCONNECT, as a killed process would (the broker publishes the Last
    /// Will): for tests.</summary>
    internal bool AbortOnDispose { get; set; }

    /// <summary>QoS 1/2 publishes allowed in flight now (the option, or the broker's Receive Maximum when lower).</summary>
    public int InflightLimit => Volatile.Read(ref _windowTarget);

    /// <summary>Starts connecting (retrying with backoff while the broker is unreachable or refuses) and waits for the
    /// first connection; cancelling the wait leaves the connection trying.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            _connectLoop = Task.Run(() => ConnectLoopAsync(_stopping.Token), CancellationToken.None);
            _dispatchLoop = Task.Run(() => KeepDispatchingAsync(_stopping.Token), CancellationToken.None);
            _sendLoop = Task.Run(() => SendLoopAsync(_stopping.Token), CancellationToken.None);
            _reconnect.Writer.TryWrite(true);
        }

        await WaitConnectedAsync(cancellationToken);
    }

    /// <summary>Waits until connected (and subscribed).</summary>
    public Task WaitConnectedAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            return _connected.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>The topic filters subscribed at every connect, as they are now: a copy taken under the lock the
    /// <see cref="BrokerOptions.Subscribing"/> callback runs under (it may replace them at a reconnect meanwhile).</summary>
    public IReadOnlyList<string> SubscribedFilters()
    {
        lock (_gate)
        {
            return [.. _options.Subscriptions.Select(s => s.Filter)];
        }
    }

    /// <summary>Subscribes now (waiting for the connection) and again on every connect that finds no session. A
    /// subscription that failed (refused, timed out, cancelled) is not kept.</summary>
    public async Task SubscribeAsync(string filter, MqttQualityOfServiceLevel qos, CancellationToken cancellationToken)
    {
        // Checked before it is kept: an invalid filter, once among the subscriptions, would fail every later connect.
        CheckFilter(filter);
        lock (_gate)
        {
            _options.Subscriptions.Add((filter, qos));
        }

        try
        {
            using var timeout = Timeout(cancellationToken);
            await WaitConnectedOrTimeoutAsync(timeout.Token, cancellationToken);
            if (await SubscribeAllAsync([(filter, qos)], timeout.Token) is not null)
            {
                throw new BrokerPublishException($"The broker refused the subscription to {filter}.");
            }
        }
        catch (Exception)
        {
            // The caller was told. Kept, a filter the broker refuses would fail every later connect (a refused renewal
            // is a failed connect), this one's wait included.
            lock (_gate)
            {
                _options.Subscriptions.Remove((filter, qos));
            }

            throw;
        }
    }

    /// <summary>A topic filter the broker takes: not empty, and '+' and '#' each a whole level, '#' the last.</summary>
    private static void CheckFilter(string filter)
    {
        ArgumentException.ThrowIfNullOrEmpty(filter);
        var levels = filter.Split('/');
        for (var i = 0; i < levels.Length; i++)
        {
            var level = levels[i];
            if ((level.Contains('+', StringComparison.Ordinal) && level != "+")
                || (level.Contains('#', StringComparison.Ordinal) && (level != "#" || i != levels.Length - 1)))
            {
                throw new ArgumentException($"'{filter}' is not a topic filter: '+' and '#' must each be a whole level, '#' the last", nameof(filter));
            }
        }
    }

    /// <summary>
    /// Publishes and returns once the broker has the message (QoS 0: once it is written). Waits for the connection
    /// while disconnected; retries on QuotaExceeded and on a connection lost mid-publish (so a QoS 1/2 message may
    /// arrive twice); throws <see cref="TimeoutException"/> after <see cref="BrokerOptions.OperationTimeout"/> and
    /// <see cref="BrokerPublishException"/> when the broker refuses it, or at once (nothing sent) when the packet is larger than the
    /// Maximum Packet Size the broker announced (MQTT 5; <see cref="BrokerPublishException.MaximumPacketSize"/>). Publishes with the same
    /// <paramref name="orderKey"/> are published one after the other, in call order (each once the one before it completed).
    /// </summary>
    public Task PublishAsync(string topic, ReadOnlyMemory<byte> payload, MqttQualityOfServiceLevel qos, bool retain, string? orderKey, CancellationToken cancellationToken) =>
        PublishAsync(topic, new ReadOnlySequence<byte>(payload), qos, retain, orderKey, cancellationToken);

    /// <summary>Publishes a payload made of several buffers (as <see cref="PublishAsync(string, ReadOnlyMemory{byte}, MqttQualityOfServiceLevel, bool, string?, CancellationToken)"/>);
    /// with <see cref="BrokerOptions.AllowPacketFragmentation"/> each buffer is written as it is, without joining them.
    /// The buffers must not change until the publish completes.</summary>
    public Task PublishAsync(string topic, ReadOnlySequence<byte> payload, MqttQualityOfServiceLevel qos, bool retain, string? orderKey, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(qos)
            .WithRetainFlag(retain)
            .Build();
        // The operation timeout runs from the call, also for a publish that first waits for the one before it.
        var started = _time.GetTimestamp();
        // Ordered at every QoS: a publish the connection lost is sent again on the next one, behind whatever was called
        // meanwhile (MQTT keeps one connection's order, not a resend's).
        if (orderKey is null)
        {
            return PublishCheckedAsync(message, started, null, cancellationToken);
        }

        return _publishOrder.RunAsync(orderKey, previous => PublishCheckedAsync(message, started, previous, cancellationToken));
    }

    /// <summary>Publishes at QoS 0/1/2 without an order key.</summary>
    public Task PublishAsync(string topic, ReadOnlyMemory<byte> payload, MqttQualityOfServiceLevel qos, CancellationToken cancellationToken) =>
        PublishAsync(topic, payload, qos, retain: false, orderKey: null, cancellationToken);

    /// <summary>Publishes a payload of several buffers at QoS 0/1/2 without an order key.</summary>
    public Task PublishAsync(string topic, ReadOnlySequence<byte> payload, MqttQualityOfServiceLevel qos, CancellationToken cancellationToken) =>
        PublishAsync(topic, payload, qos, retain: false, orderKey: null, cancellationToken);

    /// <summary>
    /// Makes disposing close the connection without DISCONNECT, as a killed process would, so that the broker publishes
    /// the Last Will (MQTT 3.1.1 has no DISCONNECT that keeps it; this works for both versions): for a client that could
    /// not say goodbye itself, e.g. whose "offline" publish failed on the way out.
    /// </summary>
    public void LeaveWithWill() => AbortOnDispose = true;

    /// <summary>Sends DISCONNECT (no Last Will) and stops reconnecting. Disposing does the same.</summary>
    public async Task DisconnectAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        await StopSendingAsync();
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), cancellationToken);
        }
    }

    /// <summary>
    /// Ends this client's session at the broker and disconnects, for a connection that borrowed another client's session
    /// to drain it: MQTT 5 sends DISCONNECT with a session expiry of one second; MQTT 3.1.1, which has no such field, disconnects and
    /// connects once more with a clean session, which the broker drops at that connection's DISCONNECT. Stops
    /// reconnecting. False, and the session is left alone, when the connection was no longer up (its owner took it back), or (3.1.1) the broker refused the clean-session connect.
    /// </summary>
    public async Task<bool> EndSessionAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        await StopSendingAsync();
        if (!_client.IsConnected)
        {
            return false;
        }

        var disconnect = new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build();
        if (_options.ProtocolVersion == MQTTnet.Formatter.MqttProtocolVersion.V500)
        {
            // One second, not zero: MQTTnet leaves a zero out of the packet (its default), and the CONNECT's expiry then
            // stands. Within that second the session's owner may still connect and find it.
            disconnect.SessionExpiryInterval = 1;
            await _client.DisconnectAsync(disconnect, cancellationToken);
            return true;
        }

        await _client.DisconnectAsync(disconnect, cancellationToken);
        _clientOptions.CleanSession = true;
        _clientOptions.WillTopic = null;
        // MQTTnet 5 returns a refusal instead of throwing (as in ConnectAsync): the broker then still holds the session.
        if ((await _client.ConnectAsync(_clientOptions, cancellationToken)).ResultCode != MqttClientConnectResultCode.Success)
        {
            return false;
        }

        await _client.DisconnectAsync(disconnect, cancellationToken);
        return true;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return; // the host may dispose a service registered under two types twice
        }

        await StopSendingAsync();
        if (!AbortOnDispose && _client.IsConnected)
        {
            await DisconnectQuietlyAsync(TimeSpan.FromSeconds(3));
        }

        _reconnect.Writer.TryComplete();
        _received.Writer.TryComplete();
        try
        {
            await Task.WhenAll(_connectLoop, _dispatchLoop, _sendLoop);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Stopping: a loop cancelled in the middle of a connect or a subscribe ends with MQTTnet's error for it (a
            // failed connect, a timeout, a lost connection) rather than a cancellation; the client is disposed anyway.
            BrokerLog.StoppedWith(_logger, ex.GetType().Name, ex.Message);
        }

        _client.Dispose();
        _stopping.Dispose();
        _window.Dispose();
    }

    /// <summary>Stops the connection's loops and refuses publishes from now on; the queued ones fail at once (the send
    /// loop fails them as it ends; here those it never took, had it not started).</summary>
    private async Task StopSendingAsync()
    {
        _sends.Writer.TryComplete();
        await _stopping.CancelAsync();
        if (_sendLoop.IsCompleted)
        {
            FailQueuedSends(null);
        }
    }

    /// <summary>Fails the publishes the send loop holds or has not taken: the connection stopped.</summary>
    private void FailQueuedSends(Send? current)
    {
        current?.Done.TrySetException(Stopped(current.Message.Topic, null));
        while (_sends.Reader.TryRead(out var send))
        {
            Interlocked.Decrement(ref _queuedSends);
            send.Done.TrySetException(Stopped(send.Message.Topic, null));
        }
    }

    private ObjectDisposedException Stopped(string topic, Exception? inner) =>
        new($"The broker connection to {_options.Host}:{_options.Port} was stopped before the publish on {topic} completed.", inner);

    /// <param name="started">When the publish was called: its operation timeout runs from then.</param>
    /// <param name="previous">Ends once the earlier publish with the same order key has: waited for within the
    /// operation timeout and the token (a long queue of one key's publishes during an outage does not make the last one
    /// wait for all the timeouts before it).</param>
    private async Task PublishCheckedAsync(MqttApplicationMessage message, long started, Task? previous, CancellationToken cancellationToken)
    {
        // A deadline rather than a linked token source per publish (this is the hot path of every publish).
        if (previous is { IsCompleted: false })
        {
            var left = _options.OperationTimeout - _time.GetElapsedTime(started);
            await previous.WaitAsync(left > TimeSpan.Zero ? left : TimeSpan.Zero, _time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (!previous.IsCompleted)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw new TimeoutException(
                    $"Publishing on {message.Topic} waited longer than {_options.OperationTimeout.TotalSeconds:0.#} s for the publish before it with the same order key.");
            }
        }

        var retryDelay = TimeSpan.FromMilliseconds(5);
        while (true)
        {
            var remaining = _options.OperationTimeout - _time.GetElapsedTime(started);
            // MQTTnet sends a packet larger than the broker's limit as it is, and the broker closes the connection for
            // it (mosquitto's max_packet_size): sent again after every reconnect, such a publish cut the connection
            // for ever. Checked on every attempt: the limit is the last connect's.
            if (Interlocked.Read(ref _brokerMaximumPacketSize) is > 0 and var maximum && PublishPacketSize(message) is var size && size > maximum)
            {
                BrokerLog.PublishTooLarge(_logger, message.Topic, size, maximum);
                throw new BrokerPublishException(message.Topic, size, maximum);
            }

            // Queued in call order: the send loop puts them on the wire in that order.
            var send = new Send(message);
            ObjectDisposedException.ThrowIf(!_sends.Writer.TryWrite(send), this);
            Interlocked.Increment(ref _queuedSends);
            MqttClientPublishResult result;
            try
            {
                result = await send.Done.Task.WaitAsync(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, _time, cancellationToken);
            }
            catch (Exception ex) when (ex is MqttClientNotConnectedException or MqttCommunicationException)
            {
                // Lost mid-publish: wait for the next connection, then send it again.
                await ConnectionGoneAsync(send.Generation, remaining, cancellationToken);
                BrokerMetrics.PublishRetries.Add(1);
                continue;
            }
            catch (Exception ex) when (ex is TimeoutException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                send.Done.TrySetCanceled(CancellationToken.None); // the send loop skips it if it has not sent it yet
                if (_stopping.IsCancellationRequested)
                {
                    throw Stopped(message.Topic, ex); // its wait for the acknowledgement ended with the connection
                }

                throw new TimeoutException(
                    _client.IsConnected
                        ? $"Publishing on {message.Topic} did not complete within {_options.OperationTimeout.TotalSeconds:0.#} s."
                        : $"Not connected to {_options.Host}:{_options.Port} within {_options.OperationTimeout.TotalSeconds:0.#} s (publishing on {message.Topic}).",
                    ex);
            }
            catch (OperationCanceledException)
            {
                send.Done.TrySetCanceled(cancellationToken);
                throw;
            }

            if (result.IsSuccess)
            {
                BrokerMetrics.Published.Add(1);
                return;
            }

            if (result.ReasonCode != MqttClientPublishReasonCode.QuotaExceeded)
            {
                throw new BrokerPublishException(message.Topic, result.ReasonCode, result.ReasonString);
            }

            BrokerMetrics.PublishRetries.Add(1);
            BrokerLog.QuotaExceeded(_logger, message.Topic, (long)retryDelay.TotalMilliseconds);
            using (var timeout = Timeout(remaining, cancellationToken))
            {
                await DelayAsync(retryDelay, timeout.Token, cancellationToken);
            }

            retryDelay = TimeSpan.FromTicks(Math.Min(retryDelay.Ticks * 2, TimeSpan.FromMilliseconds(500).Ticks));
        }
    }

    /// <summary>
    /// Puts queued publishes on the wire one after the other, in call order: waits for the connection and for room in
    /// the in-flight window (pitfall 1: never more than the broker's Receive Maximum), starts the publish and goes on
    /// without waiting for its acknowledgement (pipelining).
    /// </summary>
    private async Task SendLoopAsync(CancellationToken stoppingToken)
    {
        Send? current = null;
        try
        {
            await SendAllAsync(send => current = send, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
        finally
        {
            // Stopping: what waits here fails at once rather than after its operation timeout, as a timeout that blames
            // the connection (and an orderly shutdown does not wait for it).
            FailQueuedSends(current);
        }
    }

    private async Task SendAllAsync(Action<Send> taking, CancellationToken stoppingToken)
    {
        // One task for the whole loop that ends with it: each disconnected wait below races it, the connection and the
        // send's own end with Task.WhenAny, which leaves nothing registered behind once one of them completes (a
        // cancellable wait per send stayed registered on the connection until it came back: one per publish given up
        // during an outage).
        var stopping = Task.Delay(System.Threading.Timeout.Infinite, stoppingToken);
        await foreach (var send in _sends.Reader.ReadAllAsync(stoppingToken))
        {
            taking(send);
            Interlocked.Decrement(ref _queuedSends);
            var limited = send.Message.QualityOfServiceLevel != MqttQualityOfServiceLevel.AtMostOnce;
            Task connected;
            lock (_gate)
            {
                connected = _connected.Task;
            }

            if (!connected.IsCompleted)
            {
                // Disconnected: a publish whose caller gives up meanwhile (its operation timeout) is dropped then, not
                // kept with its payload until the connection returns, so an outage holds at most one timeout's publishes.
                await Task.WhenAny(connected, send.Done.Task, stopping);
                stoppingToken.ThrowIfCancellationRequested();
                if (send.Done.Task.IsCompleted)
                {
                    continue;
                }
            }

            if (limited)
            {
                await _window.WaitAsync(stoppingToken);
            }

            if (send.Done.Task.IsCompleted)
            {
                ReleaseWindow(limited); // its caller gave up while it waited here
                continue;
            }

            send.Generation = Interlocked.Read(ref _generation);
            // MQTTnet waits for a PUBACK / PUBCOMP as long as the token lets it (its own timeout applies only to a token
            // that cannot be cancelled): one that never comes would hold its slot in the window for good, so a QoS 1/2
            // publish is given up after the operation timeout (its caller has given up by then).
            var acknowledged = limited ? CancellationTokenSource.CreateLinkedTokenSource(stoppingToken) : null;
            acknowledged?.CancelAfter(_options.OperationTimeout);
            try
            {
                var publish = PublishingForTests?.Invoke(send.Message) is { } failure
                    ? Task.FromException<MqttClientPublishResult>(failure)
                    : _client.PublishAsync(send.Message, acknowledged?.Token ?? stoppingToken);
                _ = CompleteAsync(send, publish, limited, acknowledged);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                acknowledged?.Dispose();
                ReleaseWindow(limited);
                send.Done.TrySetException(Lost(ex));
            }
        }
    }

    private async Task CompleteAsync(Send send, Task<MqttClientPublishResult> publish, bool limited, CancellationTokenSource? acknowledged)
    {
        try
        {
            send.Done.TrySetResult(await publish);
        }
        catch (OperationCanceledException ex) when (acknowledged?.IsCancellationRequested == true || _stopping.IsCancellationRequested)
        {
            send.Done.TrySetCanceled(ex.CancellationToken); // no acknowledgement within the operation timeout, or stopping
        }
        catch (OperationCanceledException ex)
        {
            // Neither token: MQTTnet disposed the socket under a pending write (the connection was lost) and reports the
            // aborted write (SocketError.OperationAborted) as a bare OperationCanceledException. Taken for a timeout, it
            // failed the publish at once instead of sending it again on the next connection.
            send.Done.TrySetException(new MqttCommunicationException("The connection to the broker was lost while publishing.", ex));
        }
        catch (Exception ex)
        {
            send.Done.TrySetException(Lost(ex));
        }
        finally
        {
            acknowledged?.Dispose();
            ReleaseWindow(limited);
        }
    }

    /// <summary>
    /// MQTTnet checks that it is connected at the start of a publish and reads its adapter and packet dispatcher after;
    /// a connection lost between the two (its cleanup nulls and disposes them) fails the publish with a
    /// NullReferenceException or ObjectDisposedException (as it does an acknowledgement, see AcknowledgeAsync). That is a
    /// lost connection: the publish is sent again on the next one, as after MqttClientNotConnectedException, rather than
    /// failing its caller with an error that reads as a bug or as this connection stopped.
    /// </summary>
    private Exception Lost(Exception ex) =>
        ex is NullReferenceException or ObjectDisposedException && !_stopping.IsCancellationRequested
            ? new MqttCommunicationException("The connection to the broker was lost while publishing.", ex)
            : ex;

    /// <summary>Called before each publish; an exception it returns fails that publish as MQTTnet's would (tests: a
    /// publish that races the loss of the connection).</summary>
    internal Func<MqttApplicationMessage, Exception?>? PublishingForTests { get; set; }

    private void ReleaseWindow(bool limited)
    {
        if (limited)
        {
            try
            {
                _window.Release();
            }
            catch (ObjectDisposedException)
            {
                // disposed meanwhile
            }
        }
    }

    private async Task ConnectionGoneAsync(long generation, TimeSpan remaining, CancellationToken cancellationToken)
    {
        using var timeout = Timeout(remaining, cancellationToken);
        var token = timeout.Token;
        // At least a moment: an error raised before MQTTnet noticed the loss (the client still connected) sent the
        // publish again at once, over and over until its deadline.
        await DelayAsync(TimeSpan.FromMilliseconds(10), token, cancellationToken);
        // The client saw the loss before DisconnectedAsync ran: give the event a moment so that the wait that follows is
        // for the next connection, not the dead one.
        while (Interlocked.Read(ref _generation) == generation && _connected.Task.IsCompleted && !_client.IsConnected)
        {
            await DelayAsync(TimeSpan.FromMilliseconds(10), token, cancellationToken);
        }
    }

    private async Task DelayAsync(TimeSpan delay, CancellationToken token, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, _time, token);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            throw new TimeoutException($"The broker connection did not complete the operation within {_options.OperationTimeout.TotalSeconds:0.#} s.", ex);
        }
    }

    private async Task WaitConnectedOrTimeoutAsync(CancellationToken token, CancellationToken cancellationToken)
    {
        try
        {
            await WaitConnectedAsync(token);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"Not connected to {_options.Host}:{_options.Port} within {_options.OperationTimeout.TotalSeconds:0.#} s.", ex);
        }
    }

    private CancellationTokenSource Timeout(CancellationToken cancellationToken) => Timeout(_options.OperationTimeout, cancellationToken);

    private CancellationTokenSource Timeout(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var source = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        source.CancelAfter(timeout > TimeSpan.Zero ? timeout : TimeSpan.Zero);
        return source;
    }

    /// <summary>
    /// MQTTnet raises this after a connection ends and after every failed connect, from a task of its own: it may run
    /// late, once the connect loop has made (or while it makes) the next connection. Such a late event changes nothing:
    /// undoing the new connection would leave it up but never ready (every publish timing out, no reconnect, since the
    /// client is connected). The connect loop handles the failures of its own attempts.
    /// </summary>
    internal Task OnDisconnectedAsync(MqttClientDisconnectedEventArgs e)
    {
        if (e.ClientWasConnected && !_stopping.IsCancellationRequested)
        {
            BrokerMetrics.ConnectionsLost.Add(1);
            BrokerLog.ConnectionLost(_logger, _options.Host, _options.Port, e.Exception?.Message ?? e.Reason.ToString());
            if (!_client.IsConnected)
            {
                NoteLoss(e.Reason); // not for a late event: the next connection is made already
            }
        }

        if (e.ClientWasConnected && !_options.ReconnectAfterLoss)
        {
            Volatile.Write(ref _lostForGood, 1);
            NextConnection();
            _reconnect.Writer.TryComplete();
            return Task.CompletedTask;
        }

        if (Volatile.Read(ref _attempting) == 1 || _client.IsConnected)
        {
            return Task.CompletedTask; // late, or the loop's own attempt
        }

        NextConnection();
        // Only a signal: the connect loop does the reconnecting.
        _reconnect.Writer.TryWrite(true);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Counts a connection that ended sooner than <see cref="BrokerOptions.StableConnection"/> after it was made (one that
    /// lasted resets the count): from the second in a row the next connect waits for the backoff
    /// (<see cref="ConnectAsync"/>), and from the third the pattern is logged (then at 4, 8, 16, ...), naming its usual
    /// cause. A takeover the broker says so for (MQTT 5's reason code) is an error each time.
    /// </summary>
    private void NoteLoss(MqttClientDisconnectReason reason)
    {
        var made = Volatile.Read(ref _connectedAt);
        var lasted = made == 0 ? TimeSpan.Zero : _time.GetElapsedTime(made);
        if (lasted >= _options.StableConnection)
        {
            Volatile.Write(ref _shortLived, 0);
            return;
        }

        var count = Interlocked.Increment(ref _shortLived);
        if (reason == MqttClientDisconnectReason.SessionTakenOver)
        {
            BrokerLog.SessionTakenOver(_logger, _options.Host, _options.Port, _options.ClientId);
        }
        else if (count >= 3 && (count == 3 || (count & (count - 1)) == 0))
        {
            BrokerLog.ConnectionFlapping(_logger, _options.Host, _options.Port, _options.ClientId, count, (long)lasted.TotalMilliseconds);
        }
    }

    /// <summary>Messages received from here on, and their acknowledgements, belong to the next connection; publishes wait for it.</summary>
    private void NextConnection()
    {
        lock (_gate)
        {
            Interlocked.Increment(ref _generation);
            if (_connected.Task.IsCompleted)
            {
                _connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
    }

    private async Task ConnectLoopAsync(CancellationToken stoppingToken)
    {
        while (await _reconnect.Reader.WaitToReadAsync(stoppingToken))
        {
            _reconnect.Reader.TryRead(out _);
            Volatile.Write(ref _attempting, 1);
            try
            {
                await ConnectAsync(stoppingToken);
            }
            finally
            {
                Volatile.Write(ref _attempting, 0);
            }

            if (!_client.IsConnected && !stoppingToken.IsCancellationRequested && Volatile.Read(ref _lostForGood) == 0)
            {
                // Lost between the connect and here: its event found the loop still attempting and left it to the loop.
                _reconnect.Writer.TryWrite(true);
            }
        }
    }

    /// <summary>Attempts until connected (and subscribed), with backoff and jitter.</summary>
    private async Task ConnectAsync(CancellationToken stoppingToken)
    {
        var delay = _options.ReconnectDelay;
        var shortLived = Volatile.Read(ref _shortLived);
        if (shortLived >= 2)
        {
            // Connections that keep ending soon after they are made (another client with this client id takes it back at
            // once): the backoff, as after failed attempts, instead of taking it straight back.
            for (var i = 2; i < shortLived && delay < _options.MaxReconnectDelay; i++)
            {
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxReconnectDelay.Ticks));
            }

            await Task.Delay(delay / 2 + delay / 2 * Random.Shared.NextDouble(), _time, stoppingToken);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxReconnectDelay.Ticks));
        }

        // Also ended by a loss that must not be followed by a reconnect (a borrowed session handed back to its owner while
        // this attempt still subscribed: attempting again would take the session back from the owner).
        for (var attempt = 1; !_client.IsConnected && !stoppingToken.IsCancellationRequested && Volatile.Read(ref _lostForGood) == 0; attempt++)
        {
            NextConnection();
            var made = false;
            try
            {
                using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                connectTimeout.CancelAfter(_options.ConnectTimeout);
                var result = await _client.ConnectAsync(_clientOptions, connectTimeout.Token);
                if (result.ResultCode != MqttClientConnectResultCode.Success)
                {
                    // MQTTnet 5 returns a refusal (bad credentials, not authorised, busy) instead of throwing: a failed
                    // attempt like any other, retried after the backoff, never taken for a connection.
                    throw new MqttConnectingFailedException($"{result.ResultCode}{(result.ReasonString is { Length: > 0 } why ? ": " + why : "")}", null);
                }

                made = true;
                await OnConnectedAsync(result, stoppingToken);
                break;
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
            {
                if (made && !_options.ReconnectAfterLoss && !_client.IsConnected)
                {
                    // Lost after the CONNACK (its event, which may come late, logs it): for a borrowed session, its owner
                    // took it back while this connection removed its subscriptions.
                    Volatile.Write(ref _lostForGood, 1);
                    _reconnect.Writer.TryComplete();
                    break;
                }

                // Equal jitter: half the delay fixed, half random, so that many clients do not return at once.
                var wait = delay / 2 + delay / 2 * Random.Shared.NextDouble();
                BrokerLog.ConnectFailed(_logger, _options.Host, _options.Port, attempt, (long)wait.TotalMilliseconds, Reason(ex));
                if (_client.IsConnected)
                {
                    // Connected, but what follows a connect (subscribing, the Subscribing callback) failed: a connection
                    // that is not ready is closed and made again, or it would stay up with no publish ever let through.
                    await DisconnectQuietlyAsync(_options.ConnectTimeout);
                }

                await Task.Delay(wait, _time, stoppingToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxReconnectDelay.Ticks));
            }
        }
    }

    /// <summary>
    /// DISCONNECT with a normal reason, so the broker publishes no Last Will (an orderly stop, or a half-made connection
    /// closed to be made again: the client is not gone); a connection already lost is left as it is.
    /// </summary>
    private async Task DisconnectQuietlyAsync(TimeSpan timeout)
    {
        try
        {
            using var limit = new CancellationTokenSource(timeout);
            await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), limit.Token);
        }
        catch (Exception ex) when (ex is MqttCommunicationException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // gone already; the Last Will covers it
        }
    }

    private static string Reason(Exception ex) => ex switch
    {
        MqttConnectingFailedException failed => $"the broker refused the connection: {failed.Message}",
        OperationCanceledException => "timed out",
        _ => ex.InnerException is { } inner ? $"{ex.Message} ({inner.Message})" : ex.Message,
    };

    private async Task OnConnectedAsync(MqttClientConnectResult result, CancellationToken stoppingToken)
    {
        var generation = Interlocked.Read(ref _generation);
        Interlocked.Exchange(ref _brokerMaximumPacketSize, _options.ProtocolVersion == MQTTnet.Formatter.MqttProtocolVersion.V500 ? result.MaximumPacketSize ?? 0 : 0);
        BrokerMetrics.Connects.Add(1);
        ResizeWindow(result.ReceiveMaximum is > 0 and var max ? Math.Min(_options.MaxInflight, (int)max) : _options.MaxInflight);
        BrokerLog.Connected(_logger, _options.Host, _options.Port, _options.ClientId, result.IsSessionPresent, result.ReceiveMaximum ?? 0);
        var shared = _options.ProtocolVersion == MQTTnet.Formatter.MqttProtocolVersion.V500 && result.SharedSubscriptionAvailable;
        SharedSubscriptionsAvailable = shared;
        if (_options.Subscribing is { } subscribing)
        {
            lock (_gate)
            {
                subscribing(shared);
            }
        }

        // MQTTnet applies its own timeout only to a token that cannot be cancelled: without this one a broker (or proxy)
        // that never answers the SUBSCRIBE left the connect waiting for ever, its keep-alive holding the link up, never
        // ready and ignoring the end of the connection (the loop attempting). An unanswered subscription fails the connect.
        using var answered = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        answered.CancelAfter(_options.ConnectTimeout);
        (string Filter, MqttQualityOfServiceLevel Qos)[] subscriptions;
        string[] stale;
        bool renew;
        lock (_gate)
        {
            subscriptions = [.. _options.Subscriptions];
            renew = result.IsSessionPresent && _options.StaleSubscriptions.Count > 0;
            // A filter named both wanted and stale is kept: removed after the subscribe below, it would be missing until
            // the next renewal.
            stale = [.. _options.StaleSubscriptions.Except(subscriptions.Select(s => s.Filter), StringComparer.Ordinal)];
        }

        if (!result.IsSessionPresent || renew || _subscriptionsUnsure)
        {
            if (subscriptions.Length == 0)
            {
                _subscriptionsUnsure = false; // nothing the session could lack
            }
            else
            {
                // A refused filter (an ACL, a transient failure) or no answer fails the connect: it is closed and made
                // again after the backoff, never reported ready while deaf to a topic until some later reconnect. Until
                // the broker took them all, the next connect subscribes again even when it finds the session.
                _subscriptionsUnsure = true;
                if (await SubscribeAllAsync(subscriptions, answered.Token) is { } refused)
                {
                    RefusedSubscription = refused;
                    throw new InvalidOperationException($"the broker refused the subscription to {refused}");
                }

                _subscriptionsUnsure = false;
                RefusedSubscription = null;
                BrokerLog.Subscribed(_logger, subscriptions.Length, result.IsSessionPresent);
            }
        }

        if (renew && stale.Length > 0)
        {
            // Removed once the new filters are in place, not before: in between, a message on a topic moving from a
            // plain filter to a shared one (or back) matched none of this client's subscriptions and was dropped by the
            // broker (a result lost; MQTT 5 answers "no matching subscribers"). Meanwhile it may match both and arrive
            // twice, which the handler takes (it is idempotent, and the manager's inbox drops the second).
            await UnsubscribeAllAsync(stale, answered.Token);
        }

        lock (_gate)
        {
            if (Interlocked.Read(ref _generation) == generation && _client.IsConnected)
            {
                Volatile.Write(ref _connectedAt, _time.GetTimestamp());
                _connected.TrySetResult();
            }
        }

        if (Connected is { } connected)
        {
            _ = Task.Run(
                async () =>
                {
                    try
                    {
                        await connected(result.IsSessionPresent, stoppingToken);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                    {
                        BrokerLog.ConnectedCallbackFailed(_logger, ex);
                    }
                },
                CancellationToken.None);
        }
    }

    /// <summary>Subscribes; the first filter the broker refused and its reason code (logged), or null.</summary>
    private async Task<string?> SubscribeAllAsync(IReadOnlyCollection<(string Filter, MqttQualityOfServiceLevel Qos)> subscriptions, CancellationToken cancellationToken)
    {
        var builder = new MqttClientSubscribeOptionsBuilder();
        foreach (var (filter, qos) in subscriptions)
        {
            // Renewing a kept subscription must not send the retained messages again (MQTT 5 only; 3.1.1 has no such option).
            builder.WithTopicFilter(f => f.WithTopic(filter).WithQualityOfServiceLevel(qos).WithRetainHandling(
                _options.ProtocolVersion == MQTTnet.Formatter.MqttProtocolVersion.V500 ? MqttRetainHandling.SendAtSubscribeIfNewSubscriptionOnly : MqttRetainHandling.SendAtSubscribe));
        }

        var result = await _client.SubscribeAsync(builder.Build(), cancellationToken);
        if (result.Items.FirstOrDefault(i => (int)i.ResultCode >= 0x80) is { } refused)
        {
            var reason = $"{refused.TopicFilter.Topic}: {refused.ResultCode}";
            BrokerLog.SubscribeFailed(_logger, reason);
            return reason;
        }

        return null;
    }

    /// <summary>Removes filters from the kept session; one the session does not hold is no error.</summary>
    private async Task UnsubscribeAllAsync(IList<string> filters, CancellationToken cancellationToken)
    {
        var builder = new MqttClientUnsubscribeOptionsBuilder();
        foreach (var filter in filters)
        {
            builder.WithTopicFilter(filter);
        }

        var result = await _client.UnsubscribeAsync(builder.Build(), cancellationToken);
        if (result.Items.FirstOrDefault(i => (int)i.ResultCode >= 0x80) is { } refused)
        {
            BrokerLog.UnsubscribeFailed(_logger, $"{refused.TopicFilter}: {refused.ResultCode}");
        }
    }

    /// <summary>Keeps the publishes in flight below the broker's Receive Maximum (pitfall 1): holds back permits when
    /// the target is lower than the window, gives them back when it is higher (<see cref="InflightWindow"/>).</summary>
    private void ResizeWindow(int target)
    {
        Volatile.Write(ref _windowTarget, target);
        _window.Resize(target);
    }

    private async Task OnReceivedAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        // Acknowledged by the dispatch loop after the handler (MQTTnet would acknowledge when this returns).
        e.AutoAcknowledge = false;
        var m = e.ApplicationMessage;
        // MQTTnet decodes every payload into an array of its own that it never reuses (ReadRemainingData): kept as it is
        // instead of copied once more (issue 17: a second copy of every 175 KB chunk on the proplet).
        var message = new ReceivedMessage(m.Topic, m.Payload.IsSingleSegment ? m.Payload.First : m.Payload.ToArray(), m.QualityOfServiceLevel, m.Retain, m.Dup);
        var delivery = new Delivery(message, e, Interlocked.Read(ref _generation), Stopwatch.GetTimestamp());
        if (_received.Writer.TryWrite(delivery))
        {
            return;
        }

        try
        {
            await WaitForRoomAsync(delivery);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            // stopping: not acknowledged, so the broker delivers it again to the next session
        }
    }

    /// <summary>
    /// A full receive queue holds MQTTnet's delivery of messages here, and MQTTnet waits for that delivery to end before it
    /// reports a lost connection (DisconnectedAsync): waiting only for room, a connection lost while the handler is slow
    /// (PostgreSQL down, the manager retrying) was not reconnected until the handler made room. So the wait also ends
    /// when the connection is gone; the message is not acknowledged, and the broker delivers it again.
    /// </summary>
    private async Task WaitForRoomAsync(Delivery delivery)
    {
        while (true)
        {
            var room = _received.Writer.WaitToWriteAsync(_stopping.Token).AsTask();
            while (!room.IsCompleted)
            {
                await Task.WhenAny(room, Task.Delay(ConnectionCheck, _stopping.Token));
                if (!_client.IsConnected || delivery.Generation != Interlocked.Read(ref _generation))
                {
                    BrokerLog.DeliveryDropped(_logger);
                    return;
                }
            }

            if (!await room || _received.Writer.TryWrite(delivery))
            {
                return;
            }
        }
    }

    /// <summary>
    /// Runs the dispatch loop until stopping. A loop that fails (a bug: the handler's and the acknowledgements' failures
    /// are caught inside it) would leave the connection up but deaf, nothing handled or acknowledged and the receive
    /// queue full: it is logged as an error and started again, and the connection is made again so that the broker
    /// delivers again what the failed loop left unacknowledged (those messages hold the broker's in-flight slots).
    /// </summary>
    private async Task KeepDispatchingAsync(CancellationToken stoppingToken)
    {
        while (true)
        {
            try
            {
                await DispatchLoopAsync(stoppingToken);
                return;
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
            {
                BrokerLog.DispatchFailed(_logger, ex);
                await DisconnectQuietlyAsync(_options.ConnectTimeout); // reconnected by the connect loop
                await Task.Delay(_options.ReconnectDelay, _time, stoppingToken);
            }
        }
    }

    /// <summary>The arrival (Stopwatch timestamp) of the oldest message with the handler or waiting for it; 0 when none.</summary>
    private long _oldestUnhandled;

    /// <summary>
    /// Hands what has arrived to <see cref="Handler"/> in batches and acknowledges each batch, in arrival order, once its
    /// handler has returned. Up to <see cref="BrokerOptions.MaxBatchesInFlight"/> batches are with the handler at once:
    /// the next is handed over while earlier ones are still being handled, and a batch's acknowledgements wait for the
    /// batches before it. With one (the default) a batch is acknowledged as soon as its handler returns, on this loop.
    /// </summary>
    private async Task DispatchLoopAsync(CancellationToken stoppingToken)
    {
        var inFlight = new Queue<(List<Delivery> Batch, List<ReceivedMessage> Messages, Task<bool> Handled)>();
        var free = new Stack<(List<Delivery> Batch, List<ReceivedMessage> Messages)>(); // a batch's lists, once acknowledged
        Task<bool>? readable = null;
        try
        {
            while (true)
            {
                // The batches at the head whose handlers have returned, in order; the oldest waited for when the window is full.
                while (inFlight.TryPeek(out var head) && (head.Handled.IsCompleted || inFlight.Count == _options.MaxBatchesInFlight))
                {
                    if (!await head.Handled)
                    {
                        return; // stopping: neither this batch nor a later one is acknowledged, so the broker delivers them again
                    }

                    inFlight.Dequeue();
                    Volatile.Write(ref _oldestUnhandled, inFlight.TryPeek(out var next) ? next.Batch[0].ArrivedAt : 0);
                    await AcknowledgeAllAsync(head.Batch, stoppingToken);
                    head.Batch.Clear();
                    head.Messages.Clear();
                    free.Push((head.Batch, head.Messages));
                }

                if (inFlight.Count == 0 && readable is null)
                {
                    // Nothing to acknowledge meanwhile: wait for messages alone (no Task for the wait).
                    if (!await _received.Reader.WaitToReadAsync(stoppingToken))
                    {
                        return; // completed: only by DisposeAsync, after it cancelled stoppingToken
                    }
                }
                else
                {
                    readable ??= _received.Reader.WaitToReadAsync(stoppingToken).AsTask();
                    if (!readable.IsCompleted && inFlight.TryPeek(out var oldest))
                    {
                        await Task.WhenAny(readable, oldest.Handled); // new messages, or the oldest batch to acknowledge
                        continue;
                    }

                    if (!await readable)
                    {
                        return;
                    }

                    readable = null;
                }

                var (batch, messages) = free.TryPop(out var lists) ? lists : (new List<Delivery>(), new List<ReceivedMessage>());
                while (batch.Count < _options.MaxBatch && _received.Reader.TryRead(out var delivery))
                {
                    batch.Add(delivery);
                    messages.Add(delivery.Message);
                }

                BrokerMetrics.Received.Add(batch.Count);
                BrokerMetrics.ReceiveWait.Record(Stopwatch.GetElapsedTime(batch[0].ArrivedAt).TotalSeconds);
                if (inFlight.Count == 0)
                {
                    Volatile.Write(ref _oldestUnhandled, batch[0].ArrivedAt);
                }

                inFlight.Enqueue((batch, messages, HandleAsync(messages, stoppingToken)));
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping: what is not acknowledged is delivered again
        }
        finally
        {
            // Handlers still running (stopping: cancelled; their batches are not acknowledged, so the broker delivers them
            // again) end before the loop does, so a disposed connection has no handler left running.
            while (inFlight.TryDequeue(out var left))
            {
                await left.Handled;
            }

            Volatile.Write(ref _oldestUnhandled, 0);
        }
    }

    /// <summary>The handler on one batch: false when it stopped because the connection is stopping (the batch is then
    /// not acknowledged, and the broker delivers it again); an exception is logged and the batch acknowledged.</summary>
    private async Task<bool> HandleAsync(List<ReceivedMessage> messages, CancellationToken stoppingToken)
    {
        if (Handler is not { } handler)
        {
            return true;
        }

        try
        {
            await handler(messages, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return false;
        }
        catch (Exception ex)
        {
            BrokerLog.HandlerFailed(_logger, messages[0].Topic, ex);
        }

        return true;
    }

    /// <summary>A batch's QoS 1/2 messages, in arrival order (acknowledging out of order made mosquitto reorder later
    /// deliveries, libraries.md).</summary>
    private async Task AcknowledgeAllAsync(List<Delivery> batch, CancellationToken stoppingToken)
    {
        foreach (var delivery in batch)
        {
            if (delivery.Message.Qos != MqttQualityOfServiceLevel.AtMostOnce)
            {
                await AcknowledgeAsync(delivery, stoppingToken);
            }
        }
    }

    private async Task AcknowledgeAsync(Delivery delivery, CancellationToken stoppingToken)
    {
        // A packet id belongs to its connection: acknowledging it on a later one could acknowledge another message.
        if (delivery.Generation != Interlocked.Read(ref _generation) || !_client.IsConnected)
        {
            BrokerLog.AcknowledgementDropped(_logger);
            return;
        }

        try
        {
            AcknowledgingForTests?.Invoke(delivery.Message);
            await delivery.Event.AcknowledgeAsync(stoppingToken);
        }
        catch (Exception ex) when (ex is MqttCommunicationException or MqttClientNotConnectedException or ObjectDisposedException or InvalidOperationException)
        {
            BrokerLog.AcknowledgementDropped(_logger);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Anything else (MQTTnet throws a NullReferenceException when it cleans up its adapter between the check
            // above and the send) must not end the dispatch loop: this message stays unacknowledged (the broker delivers
            // it again on the next connection) and the loop goes on with the next.
            BrokerLog.AcknowledgementFailed(_logger, ex);
        }
    }

    /// <summary>The size of <paramref name="message"/>'s PUBLISH packet as MQTT counts it against a Maximum Packet Size:
    /// fixed header, topic, packet identifier (QoS 1/2), properties (MQTT 5; none set here) and payload.</summary>
    private long PublishPacketSize(MqttApplicationMessage message)
    {
        var remaining = 2L + Encoding.UTF8.GetByteCount(message.Topic)
            + (message.QualityOfServiceLevel == MqttQualityOfServiceLevel.AtMostOnce ? 0 : 2)
            + (_options.ProtocolVersion == MQTTnet.Formatter.MqttProtocolVersion.V500 ? 1 : 0)
            + message.Payload.Length;
        var lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
        return 1 + lengthBytes + remaining;
    }

    /// <summary>Called before each acknowledgement (tests: a failing acknowledgement).</summary>
    internal Action<ReceivedMessage>? AcknowledgingForTests { get; set; }

    internal static MqttClientOptions BuildClientOptions(BrokerOptions options)
    {
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(options.Host, options.Port)
            .WithClientId(options.ClientId)
            .WithProtocolVersion(options.ProtocolVersion)
            .WithCleanStart(options.CleanStart)
            .WithKeepAlivePeriod(options.KeepAlive)
            .WithTimeout(options.ConnectTimeout);
        if (!options.AllowPacketFragmentation)
        {
            // One write per packet: with fragmentation allowed MQTTnet writes a publish's header and payload separately,
            // two segments per message on a no-delay socket.
            builder.WithoutPacketFragmentation();
        }

        if (options.SessionExpiryInterval > 0 && options.ProtocolVersion == MQTTnet.Formatter.MqttProtocolVersion.V500)
        {
            builder.WithSessionExpiryInterval(options.SessionExpiryInterval);
        }

        if (options.ProtocolVersion == MQTTnet.Formatter.MqttProtocolVersion.V500)
        {
            // Our Receive Maximum: the broker sends at most this many QoS 1/2 messages unacknowledged. It is what bounds
            // MQTTnet's own queue of received publishes, which has no limit (its read loop goes on reading while a full
            // receive queue holds the delivery); unset, MQTT 5 means 65535. MQTT 3.1.1 has no such field: the broker's
            // own limit applies (mosquitto's max_inflight_messages, 20 by default).
            builder.WithReceiveMaximum((ushort)Math.Min(ushort.MaxValue, options.ReceiveQueueCapacity));
            if (options.MaxPacketSize > 0)
            {
                // MQTT 5 only as well: MQTTnet refuses a 3.1.1 connect that carries it (NotSupportedException), and the
                // proplet always sets it (PROPLET_MQTT_MAX_PACKET_SIZE), so a proplet on 3.1.1 never connected.
                builder.WithMaximumPacketSize(options.MaxPacketSize);
            }
        }

        if (options.Username is { Length: > 0 } username)
        {
            builder.WithCredentials(username, options.Password);
        }

        if (options.Will is { } will)
        {
            builder.WithWillTopic(will.Topic).WithWillPayload(will.Payload).WithWillQualityOfServiceLevel(will.Qos);
        }

        if (options.Tls is { } tls)
        {
            var trusted = tls.CaFile is { } caFile ? BrokerTls.LoadCaCertificates(caFile) : null;
            builder.WithTlsOptions(t =>
            {
                t.UseTls().WithTargetHost(options.Host)
                    .WithCertificateValidationHandler(e => ValidateServerCertificate(e.Certificate as X509Certificate2, e.Chain, e.SslPolicyErrors, trusted, tls.AllowUntrustedCertificates));
                if (tls.ClientCertificateFile is { } certificate && tls.ClientKeyFile is { } key)
                {
                    t.WithClientCertificates([BrokerTls.LoadClientCertificate(certificate, key)]);
                }
            });
        }

        var built = builder.Build();
        if (built.ChannelOptions is MqttClientTcpOptions tcp)
        {
            tcp.BufferSize = options.SocketBufferSize; // see BrokerOptions.SocketBufferSize
        }

        return built;
    }

    /// <summary>
    /// Without a CA file: the system's verdict. With one: the chain must end in one of its certificates; the intermediate
    /// certificates the broker presented (<paramref name="presented"/>) help build it, so a CA file holding only the
    /// root trusts a broker whose certificate an intermediate signed.
    /// </summary>
    private static bool ValidateServerCertificate(X509Certificate2? certificate, X509Chain? presented, SslPolicyErrors errors, X509Certificate2Collection? trusted, bool allowUntrusted)
    {
        if (allowUntrusted)
        {
            return true;
        }

        if (trusted is null || certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
        {
            return errors == SslPolicyErrors.None;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (presented is not null)
        {
            foreach (var element in presented.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        return chain.Build(certificate);
    }

    private sealed class Send(MqttApplicationMessage message)
    {
        public MqttApplicationMessage Message { get; } = message;

        public TaskCompletionSource<MqttClientPublishResult> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long Generation { get; set; }
    }

    private sealed record Delivery(ReceivedMessage Message, MqttApplicationMessageReceivedEventArgs Event, long Generation, long ArrivedAt);
}
