using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt;

/// <summary>One network connection to the broker: the CONNECT/CONNACK handshake, then a reader loop (decode and
/// dispatch), a writer loop (a bounded queue drained in batches, one flush per batch) and a keep-alive loop.
/// Anything that goes wrong ends the connection; <see cref="Closed"/> then yields the reason.</summary>
[SuppressMessage("Design", "CA1001", Justification = "_cts and _writeLock hold no unmanaged resources (no timer, no wait handle); disposing them would race loops still using them.")]
internal sealed class MqttConnection
{
    private readonly Stream _stream;
    private readonly PipeReader _reader;
    private readonly PipeWriter _writer;
    private readonly Channel<MqttPacket> _outgoing;
    private readonly CancellationTokenSource _cts = new();
    private readonly TaskCompletionSource<string> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly MqttPacketEncoder _encoder = new();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly MqttClientOptions _options;
    private readonly ILogger _logger;
    private Task _writerTask = Task.CompletedTask;
    private Action<MqttConnection>? _onClosed;
    private long _lastSent;
    private long _lastReceived;
    private long _pingSentAt;

    // Reader-batch flush deferral: while the reader loop handles packets synchronously and more received bytes wait in
    // its buffer, writes made on its thread (acknowledgements, the next publish of the window) are encoded but not
    // flushed; the reader flushes once when the batch is done. Fewer syscalls without a thread switch.
    private int _deferFlushThread;
    private bool _flushPending;

    private MqttConnection(Stream stream, MqttClientOptions options, ILogger logger)
    {
        _stream = stream;
        _options = options;
        _logger = logger;
        _reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 4096));
        _writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024));
        _outgoing = Channel.CreateBounded<MqttPacket>(new BoundedChannelOptions(options.SendQueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });
        Version = options.ProtocolVersion;
        TopicAliases = new TopicAliasMap(options.ProtocolVersion == MqttProtocolVersion.V500 ? options.TopicAliasMaximum : (ushort)0);
        _lastSent = _lastReceived = Environment.TickCount64;
    }

    public MqttProtocolVersion Version { get; }

    public MqttPacket.ConnAck ConnAck { get; private set; } = new(false, 0, null);

    public TimeSpan KeepAlive { get; private set; }

    public TopicAliasMap TopicAliases { get; }

    public CancellationToken Token => _cts.Token;

    /// <summary>Completes with the reason once the connection has ended.</summary>
    public Task<string> Closed => _closed.Task;

    public static async Task<MqttConnection> OpenAsync(MqttClientOptions options, ILogger logger, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        MqttConnection? connection = null;
        try
        {
            var stream = await OpenStreamAsync(options, timeout.Token);
            connection = new MqttConnection(stream, options, logger);
            await connection.HandshakeAsync(timeout.Token);
            return connection;
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            connection?.Abort("connect timed out");
            throw new TimeoutException($"MQTT connect to {options.Host}:{options.Port} timed out after {options.ConnectTimeout}.", ex);
        }
        catch
        {
            connection?.Abort("connect failed");
            throw;
        }
    }

    private static async Task<Stream> OpenStreamAsync(MqttClientOptions options, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(options.Host, options.Port, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        Stream stream = OperatingSystem.IsLinux() ? new QuickAckStream(socket) : new NetworkStream(socket, ownsSocket: true);
        if (options.Tls is not { } tls)
        {
            return stream;
        }

        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(CreateTlsOptions(options.Host, tls), cancellationToken);
        }
        catch
        {
            await ssl.DisposeAsync();
            throw;
        }

        return ssl;
    }

    internal static SslClientAuthenticationOptions CreateTlsOptions(string host, MqttTlsOptions tls)
    {
        X509Certificate2Collection? trusted = null;
        if (tls.CaFile is not null)
        {
            trusted = [];
            trusted.ImportFromPemFile(tls.CaFile);
        }

        var result = new SslClientAuthenticationOptions
        {
            TargetHost = tls.TargetHost ?? host,
            RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                ValidateServerCertificate(certificate as X509Certificate2, errors, trusted, tls.AllowUntrustedCertificates),
        };
        if (tls.ClientCertificateFile is not null && tls.ClientKeyFile is not null)
        {
            // An ephemeral PEM key cannot be used for the TLS handshake on every platform; a PKCS#12 round trip gives a
            // key the platform owns.
            using var pem = X509Certificate2.CreateFromPemFile(tls.ClientCertificateFile, tls.ClientKeyFile);
            result.ClientCertificates = [X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null)];
        }

        return result;
    }

    private static bool ValidateServerCertificate(
        X509Certificate2? certificate,
        SslPolicyErrors errors,
        X509Certificate2Collection? trusted,
        bool allowUntrusted)
    {
        if (allowUntrusted || errors == SslPolicyErrors.None)
        {
            return true;
        }

        if (trusted is null || certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }

    private async Task HandshakeAsync(CancellationToken cancellationToken)
    {
        var connect = BuildConnect(_options);
        _encoder.Encode(connect, Version, _writer);
        await _writer.FlushAsync(cancellationToken);
        while (true)
        {
            var result = await _reader.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            var status = MqttPacketDecoder.TryDecode(ref buffer, Version, _options.MaxPacketSize, out var packet, out var error);
            // After a packet, bytes that follow it (the broker may send right after CONNACK) stay unexamined so the
            // reader loop sees them at once.
            if (status == MqttDecodeStatus.Packet)
            {
                _reader.AdvanceTo(buffer.Start);
            }
            else
            {
                _reader.AdvanceTo(buffer.Start, buffer.End);
            }

            switch (status)
            {
                case MqttDecodeStatus.Malformed:
                    MqttMetrics.ProtocolErrors.Add(1);
                    throw new MqttException($"Malformed CONNACK from {_options.Host}:{_options.Port}: {error}.");
                case MqttDecodeStatus.Packet when packet is MqttPacket.ConnAck connAck:
                    if (connAck.ReasonCode != 0)
                    {
                        throw new MqttConnectException(Version, connAck.ReasonCode, connAck.Properties?.ReasonString);
                    }

                    ConnAck = connAck;
                    var serverKeepAlive = connAck.Properties?.ServerKeepAlive;
                    KeepAlive = serverKeepAlive is { } seconds ? TimeSpan.FromSeconds(seconds) : _options.KeepAlive;
                    return;
                case MqttDecodeStatus.Packet:
                    MqttMetrics.ProtocolErrors.Add(1);
                    throw new MqttException($"Expected CONNACK from {_options.Host}:{_options.Port} but got {packet!.Type}.");
                default:
                    if (result.IsCompleted)
                    {
                        throw new MqttException($"{_options.Host}:{_options.Port} closed the connection before CONNACK.");
                    }

                    break;
            }
        }
    }

    internal static MqttPacket.Connect BuildConnect(MqttClientOptions options)
    {
        var v5 = options.ProtocolVersion == MqttProtocolVersion.V500;
        MqttProperties? properties = null;
        if (v5)
        {
            properties = new MqttProperties
            {
                SessionExpiryInterval = options.SessionExpiryInterval == 0 ? null : options.SessionExpiryInterval,
                ReceiveMaximum = options.ReceiveMaximum,
                MaximumPacketSize = (uint)options.MaxPacketSize,
                TopicAliasMaximum = options.TopicAliasMaximum == 0 ? null : options.TopicAliasMaximum,
            };
        }

        MqttPacket.WillMessage? will = null;
        if (options.Will is { } w)
        {
            will = new MqttPacket.WillMessage(w.Topic, w.Payload, w.QualityOfService, w.Retain, v5 ? MqttClient.ToProperties(w) : null);
        }

        return new MqttPacket.Connect(
            options.ProtocolVersion,
            options.ClientId,
            options.CleanStart,
            (ushort)options.KeepAlive.TotalSeconds,
            options.Username,
            options.Password is null ? null : Encoding.UTF8.GetBytes(options.Password),
            will,
            properties);
    }

    /// <summary>Starts the loops; <paramref name="onPacket"/> runs on the reader loop, one packet at a time, and
    /// <paramref name="onClosed"/> runs once, synchronously, when the connection ends.</summary>
    public void Start(Func<MqttConnection, MqttPacket, CancellationToken, ValueTask> onPacket, Action<MqttConnection> onClosed)
    {
        _onClosed = onClosed;
        if (_closed.Task.IsCompleted)
        {
            onClosed(this);
            return;
        }

        // The loops watch _cts themselves and always end normally; they must start even if it is already cancelled.
        _writerTask = Task.Run(WriteLoopAsync, CancellationToken.None);
        _ = Task.Run(() => ReadLoopAsync(onPacket), CancellationToken.None);
        _ = Task.Run(KeepAliveLoopAsync, CancellationToken.None);
    }

    /// <summary>Sends a packet, or queues it for the writer loop (waiting while the queue is full). False when the
    /// connection has ended. Acknowledgements and QoS 1/2 publishes are written on the caller's thread when nothing is
    /// queued and nobody is writing: that saves a thread switch per packet on the acknowledgement round trips that
    /// bound QoS 1/2 throughput. QoS 0 publishes always go through the queue, which batches them into few writes.</summary>
    public ValueTask<bool> SendAsync(MqttPacket packet) => SendAsync(packet, deferFlush: false);

    /// <summary>As <see cref="SendAsync(MqttPacket)"/>; with <paramref name="deferFlush"/> an immediate write is only
    /// encoded (the call then completes synchronously, so it can run under a lock) and <see cref="FlushDeferredAsync"/>
    /// must follow.</summary>
    public ValueTask<bool> SendAsync(MqttPacket packet, bool deferFlush)
    {
#pragma warning disable VSTHRD103 // Wait(0) is a try-acquire: it never blocks.
        if (packet is not MqttPacket.Publish { Qos: MqttQualityOfService.AtMostOnce }
            && _outgoing.Reader.Count == 0
            && _writeLock.Wait(0, CancellationToken.None))
#pragma warning restore VSTHRD103
        {
            // Under the write lock nothing can be dequeued, so an empty queue here means nothing queued earlier is
            // still unwritten: writing now keeps the order.
            if (_outgoing.Reader.Count == 0)
            {
                return WriteNowAsync(packet, deferFlush);
            }

            _writeLock.Release();
        }

        if (_outgoing.Writer.TryWrite(packet))
        {
            return new ValueTask<bool>(true);
        }

        return SendSlowAsync(packet);
    }

    private async ValueTask<bool> WriteNowAsync(MqttPacket packet, bool deferFlush)
    {
        try
        {
            if (_closed.Task.IsCompleted)
            {
                return false;
            }

            _encoder.Encode(packet, Version, _writer);
            if (deferFlush || Volatile.Read(ref _deferFlushThread) == Environment.CurrentManagedThreadId)
            {
                Volatile.Write(ref _flushPending, true);
                return true;
            }

            Volatile.Write(ref _flushPending, false);
            await _writer.FlushAsync(_cts.Token);
            Volatile.Write(ref _lastSent, Environment.TickCount64);
            return true;
        }
        catch (Exception ex)
        {
            Abort($"write failed: {ex.GetType().Name}: {ex.Message}");
            return false;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async ValueTask<bool> SendSlowAsync(MqttPacket packet)
    {
        try
        {
            await _outgoing.Writer.WriteAsync(packet, _cts.Token);
            return true;
        }
        catch (ChannelClosedException)
        {
            return false;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Ends the connection at once. Idempotent; the first reason wins.</summary>
    public void Abort(string reason)
    {
        if (!_closed.TrySetResult(reason))
        {
            return;
        }

        _outgoing.Writer.TryComplete();
        _cts.Cancel();
        _stream.Dispose();
        _onClosed?.Invoke(this);
    }

    /// <summary>Sends <paramref name="last"/> (DISCONNECT) after everything queued, waits for the flush, then closes.</summary>
    public async Task CloseAsync(MqttPacket last, string reason, CancellationToken cancellationToken)
    {
        try
        {
            if (await SendAsync(last))
            {
                _outgoing.Writer.TryComplete();
                await _writerTask.WaitAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The connection ended some other way while closing; the DISCONNECT was written or no longer matters.
        }
        finally
        {
            Abort(reason);
        }
    }

    /// <summary>A protocol violation: log it, tell an MQTT 5 broker why (best effort), close.</summary>
    public async ValueTask FailAsync(string reason, byte reasonCode)
    {
        MqttLog.ProtocolViolation(_logger, _options.Host, _options.Port, reason);
        MqttMetrics.ProtocolErrors.Add(1);
        if (Version == MqttProtocolVersion.V500 && _outgoing.Writer.TryWrite(new MqttPacket.Disconnect(reasonCode, null)))
        {
            _outgoing.Writer.TryComplete();
            try
            {
                await _writerTask.WaitAsync(TimeSpan.FromSeconds(1), _cts.Token);
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
            {
                // The broker is not reading; closing anyway is all that is left.
            }
        }

        Abort($"protocol violation: {reason}");
    }

    private async Task ReadLoopAsync(Func<MqttConnection, MqttPacket, CancellationToken, ValueTask> onPacket)
    {
        var token = _cts.Token;
        try
        {
            while (true)
            {
                var result = await _reader.ReadAsync(token);
                var buffer = result.Buffer;
                string? violation = null;
                try
                {
                    while (true)
                    {
                        var status = MqttPacketDecoder.TryDecode(ref buffer, Version, _options.MaxPacketSize, out var packet, out var error);
                        if (status == MqttDecodeStatus.NeedMoreData)
                        {
                            break;
                        }

                        if (status == MqttDecodeStatus.Malformed)
                        {
                            violation = error;
                            break;
                        }

                        Volatile.Write(ref _lastReceived, Environment.TickCount64);
                        Volatile.Write(ref _pingSentAt, 0);
                        Volatile.Write(ref _deferFlushThread, buffer.IsEmpty ? 0 : Environment.CurrentManagedThreadId);
                        var handling = onPacket(this, packet!, token);
                        if (!handling.IsCompletedSuccessfully)
                        {
                            // The handler waits (e.g. for room in the receive queue): what it wrote must not wait with it.
                            Volatile.Write(ref _deferFlushThread, 0);
                            await FlushPendingAsync(token);
                            await handling;
                        }
                    }
                }
                finally
                {
                    Volatile.Write(ref _deferFlushThread, 0);
                    _reader.AdvanceTo(buffer.Start, buffer.End);
                }

                await FlushPendingAsync(token);

                if (violation is not null)
                {
                    await FailAsync(violation, 0x81);
                    return;
                }

                if (result.IsCompleted)
                {
                    Abort("the broker closed the connection");
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Aborted elsewhere; the reason is already recorded.
        }
        catch (Exception ex)
        {
            // Whatever failed (socket, TLS, a bug in a handler), the connection must end so the client reconnects.
            Abort($"read failed: {ex.GetType().Name}: {ex.Message}");
        }
        finally
        {
            await _reader.CompleteAsync();
        }
    }

    /// <summary>Flushes what a deferred send encoded, unless the reader loop will (the call runs inside its batch).</summary>
    public ValueTask FlushDeferredAsync()
    {
        if (!Volatile.Read(ref _flushPending) || Volatile.Read(ref _deferFlushThread) == Environment.CurrentManagedThreadId)
        {
            return ValueTask.CompletedTask;
        }

        return FlushDeferredSlowAsync();
    }

    private async ValueTask FlushDeferredSlowAsync()
    {
        try
        {
            await FlushPendingAsync(_cts.Token);
        }
        catch (Exception ex)
        {
            Abort($"write failed: {ex.GetType().Name}: {ex.Message}");
        }
    }

    private async ValueTask FlushPendingAsync(CancellationToken cancellationToken)
    {
        if (!Volatile.Read(ref _flushPending))
        {
            return;
        }

        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (Volatile.Read(ref _flushPending))
            {
                Volatile.Write(ref _flushPending, false);
                await _writer.FlushAsync(cancellationToken);
                Volatile.Write(ref _lastSent, Environment.TickCount64);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async Task WriteLoopAsync()
    {
        var token = _cts.Token;
        var queue = _outgoing.Reader;
        try
        {
            while (await queue.WaitToReadAsync(token))
            {
                await _writeLock.WaitAsync(token);
                try
                {
                    while (queue.TryRead(out var packet))
                    {
                        _encoder.Encode(packet, Version, _writer);
                        if (_writer.UnflushedBytes >= 64 * 1024)
                        {
                            await _writer.FlushAsync(token);
                        }
                    }

                    Volatile.Write(ref _flushPending, false);
                    await _writer.FlushAsync(token);
                    Volatile.Write(ref _lastSent, Environment.TickCount64);
                }
                finally
                {
                    _writeLock.Release();
                }
            }

            Abort("closed by the client");
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Aborted elsewhere.
        }
        catch (Exception ex)
        {
            Abort($"write failed: {ex.GetType().Name}: {ex.Message}");
        }
    }

    private async Task KeepAliveLoopAsync()
    {
        var keepAliveMs = (long)KeepAlive.TotalMilliseconds;
        if (keepAliveMs <= 0)
        {
            return;
        }

        var token = _cts.Token;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Clamp(keepAliveMs / 4, 50, 5000)));
        try
        {
            while (await timer.WaitForNextTickAsync(token))
            {
                var now = Environment.TickCount64;
                var pingSentAt = Volatile.Read(ref _pingSentAt);
                if (pingSentAt != 0)
                {
                    if (now - pingSentAt > keepAliveMs)
                    {
                        MqttLog.KeepAliveTimeout(_logger, _options.Host, _options.Port, keepAliveMs);
                        Abort("keep-alive timeout: the broker did not answer PINGREQ");
                        return;
                    }

                    continue;
                }

                var idle = keepAliveMs * 3 / 4;
                if (now - Volatile.Read(ref _lastSent) >= idle || now - Volatile.Read(ref _lastReceived) >= idle)
                {
                    Volatile.Write(ref _pingSentAt, now);
                    await SendAsync(MqttPacket.PingReq.Instance);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // The connection ended.
        }
    }
}
