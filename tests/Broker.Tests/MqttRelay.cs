using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Propeller.Broker.Tests;

/// <summary>
/// Forwards loopback connections to a broker, as a network (or a proxy) between it and a client that misbehaves on
/// demand: <see cref="FromBroker"/> swallows or rewrites chosen packets the broker sends (read packet by packet), and
/// <see cref="StallAfterClientBytes"/> stops reading what the client sends once that much passed on a connection, then
/// hangs up on it (FIN to the client, whose write is still pending; the broker side closed).
/// </summary>
internal sealed class MqttRelay : IAsyncDisposable
{
    private readonly List<TcpClient> _connections = [];
    private readonly string _host;
    private readonly int _port;
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private int _accepted;
    private long _stallAfter = -1;

    private MqttRelay(string host, int port)
    {
        _host = host;
        _port = port;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        // Small, so that a stalled relay soon leaves the client's write pending (accepted sockets inherit it).
        _listener.Server.ReceiveBufferSize = 65_536;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync(_stop.Token);
    }

    public int Port { get; }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Given a whole packet from the broker, what to send the client instead (null: nothing).</summary>
    public Func<byte[], byte[]?>? FromBroker { get; set; }

    /// <summary>Once (the next connection to pass that many bytes from the client): stall and hang up, as above.</summary>
    public long StallAfterClientBytes
    {
        get => Interlocked.Read(ref _stallAfter);
        set => Interlocked.Exchange(ref _stallAfter, value);
    }

    public static MqttRelay Start(string address)
    {
        var uri = new Uri(address);
        return new MqttRelay(uri.Host, uri.Port);
    }

    private async Task AcceptAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(stop);
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                return;
            }

            var outbound = new TcpClient();
            try
            {
                await outbound.ConnectAsync(_host, _port, stop);
            }
            catch (Exception)
            {
                inbound.Dispose();
                outbound.Dispose();
                continue;
            }

            Interlocked.Increment(ref _accepted);
            lock (_connections)
            {
                _connections.Add(inbound);
                _connections.Add(outbound);
            }

            var stalled = new StrongBox<bool>();
            _ = FromClientAsync(inbound, outbound, stalled, stop);
            _ = FromBrokerAsync(outbound, inbound, stalled, stop);
        }
    }

    private async Task FromClientAsync(TcpClient client, TcpClient broker, StrongBox<bool> stalled, CancellationToken stop)
    {
        try
        {
            var buffer = new byte[16_384];
            var (reading, writing) = (client.GetStream(), broker.GetStream());
            long passed = 0;
            int read;
            while ((read = await reading.ReadAsync(buffer, stop)) > 0)
            {
                await writing.WriteAsync(buffer.AsMemory(0, read), stop);
                passed += read;
                if (StallAfterClientBytes is >= 0 and var limit && passed >= limit && Interlocked.CompareExchange(ref _stallAfter, -1, limit) == limit)
                {
                    // Reads nothing more, so the client's write stays pending; then the client hears the end of the
                    // connection while it writes (its socket is disposed under the write).
                    Volatile.Write(ref stalled.Value, true);
                    await Task.Delay(TimeSpan.FromMilliseconds(300), stop);
                    broker.Dispose();
                    client.Client.Shutdown(SocketShutdown.Send);
                    await Task.Delay(TimeSpan.FromSeconds(2), stop);
                    break;
                }
            }
        }
        catch (Exception)
        {
            // stopped, or either side closed
        }

        client.Dispose();
        broker.Dispose();
    }

    private async Task FromBrokerAsync(TcpClient broker, TcpClient client, StrongBox<bool> stalled, CancellationToken stop)
    {
        try
        {
            var (reading, writing) = (broker.GetStream(), client.GetStream());
            var header = new byte[5];
            while (true)
            {
                await reading.ReadExactlyAsync(header.AsMemory(0, 1), stop);
                var length = 0;
                var count = 1;
                for (var shift = 0; ; shift += 7)
                {
                    await reading.ReadExactlyAsync(header.AsMemory(count, 1), stop);
                    length |= (header[count] & 0x7F) << shift;
                    if ((header[count++] & 0x80) == 0)
                    {
                        break;
                    }
                }

                var packet = new byte[count + length];
                header.AsSpan(0, count).CopyTo(packet);
                await reading.ReadExactlyAsync(packet.AsMemory(count), stop);
                if ((FromBroker is { } rewrite ? rewrite(packet) : packet) is { } forwarded)
                {
                    await writing.WriteAsync(forwarded, stop);
                }
            }
        }
        catch (Exception)
        {
            // stopped, or either side closed
        }

        broker.Dispose();
        if (!Volatile.Read(ref stalled.Value))
        {
            client.Dispose(); // a stalled client is hung up on with FIN only (closed with unread data, it would be reset)
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        lock (_connections)
        {
            foreach (var connection in _connections)
            {
                connection.Dispose();
            }
        }

        await _accepting;
        _stop.Dispose();
    }
}
