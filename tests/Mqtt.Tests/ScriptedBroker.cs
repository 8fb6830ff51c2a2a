using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt.Tests;

/// <summary>A broker the test scripts packet by packet (with our codec), for behaviour a real broker will not show on
/// demand: duplicate QoS 2 deliveries, a session that survives a dropped connection, silence on PINGREQ, bad bytes.</summary>
internal sealed class ScriptedBroker : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);

    public ScriptedBroker() => _listener.Start();

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public MqttClientOptions Options(MqttProtocolVersion version) => new()
    {
        Host = "127.0.0.1",
        Port = Port,
        ProtocolVersion = version,
        ClientId = "scripted",
        ReconnectDelay = TimeSpan.FromMilliseconds(50),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(200),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>Accepts the next connection and reads its CONNECT.</summary>
    public async Task<(Session Session, MqttPacket.Connect Connect)> AcceptAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        var socket = await _listener.AcceptSocketAsync(timeout.Token);
        var session = new Session(socket);
        var connect = (MqttPacket.Connect)await session.ReadAsync(cancellationToken);
        session.Version = connect.Version;
        return (session, connect);
    }

    public ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Dispose();
        return ValueTask.CompletedTask;
    }

    internal sealed class Session(Socket socket) : IAsyncDisposable
    {
        private readonly NetworkStream _stream = new(socket, ownsSocket: true);
        private PipeReader? _reader;

        public MqttProtocolVersion Version { get; set; } = MqttProtocolVersion.V500;

        public async Task<MqttPacket> ReadAsync(CancellationToken cancellationToken)
        {
            _reader ??= PipeReader.Create(_stream);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            while (true)
            {
                var result = await _reader.ReadAsync(timeout.Token);
                var buffer = result.Buffer;
                var status = MqttPacketDecoder.TryDecode(ref buffer, Version, 1 << 20, out var packet, out var error);
                if (status == MqttDecodeStatus.Packet)
                {
                    _reader.AdvanceTo(buffer.Start);
                    return packet!;
                }

                _reader.AdvanceTo(buffer.Start, buffer.End);

                if (status == MqttDecodeStatus.Malformed || result.IsCompleted)
                {
                    throw new InvalidOperationException($"scripted broker: {error ?? "connection closed"}");
                }
            }
        }

        /// <summary>True when the client closes the connection within the timeout (packets before that are skipped).</summary>
        public async Task<bool> ClosedByClientAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            cts.CancelAfter(timeout);
            try
            {
                var buffer = new byte[4096];
                while (await _stream.ReadAsync(buffer, cts.Token) > 0)
                {
                }

                return true;
            }
            catch (IOException)
            {
                return true;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return false;
            }
        }

        public async Task SendAsync(MqttPacket packet, CancellationToken cancellationToken)
        {
            var output = new ArrayBufferWriter<byte>();
            new MqttPacketEncoder().Encode(packet, Version, output);
            await _stream.WriteAsync(output.WrittenMemory, cancellationToken);
        }

        public async Task SendRawAsync(byte[] bytes, CancellationToken cancellationToken) =>
            await _stream.WriteAsync(bytes, cancellationToken);

        public async ValueTask DisposeAsync()
        {
            if (_reader is not null)
            {
                await _reader.CompleteAsync();
            }

            await _stream.DisposeAsync();
        }
    }
}
