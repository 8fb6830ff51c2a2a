using System.Net;
using System.Net.Sockets;

namespace Propeller.Tests.Shared;

/// <summary>
/// Forwards loopback connections to a server (PostgreSQL, the broker), as a network between it and its clients:
/// <see cref="Cut"/> drops every connection and refuses new ones (the server unreachable), <see cref="RestoreAsync"/>
/// accepts again on the same port (the server back); <see cref="Latency"/> holds back what it forwards (a slow network).
/// </summary>
internal sealed class TcpRelay : IAsyncDisposable
{
    private readonly List<TcpClient> _connections = [];
    private readonly string _host;
    private readonly int _port;
    private TcpListener _listener;
    private CancellationTokenSource _cut = new();
    private Task _accepting = Task.CompletedTask;

    private TcpRelay(string host, int port)
    {
        _host = host;
        _port = port;
        _listener = new TcpListener(IPAddress.Loopback, 0);
    }

    public int Port { get; private set; }

    /// <summary>How long each chunk waits before it is forwarded, either way (zero: at once).</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>A relay in front of the tests' PostgreSQL (<see cref="TestPostgres"/>), and the connection string through
    /// it (a 3 s connect timeout, so what needs PostgreSQL fails soon while it is cut).</summary>
    public static async Task<(TcpRelay Relay, string ConnectionString)> InFrontOfTestPostgresAsync()
    {
        var db = new Npgsql.NpgsqlConnectionStringBuilder(await TestPostgres.ConnectionStringAsync());
        var relay = Start(db.Host!, db.Port);
        db.Host = "127.0.0.1";
        db.Port = relay.Port;
        db.Timeout = 3;
        return (relay, db.ConnectionString);
    }

    public static TcpRelay Start(string host, int port)
    {
        var relay = new TcpRelay(host, port);
        relay.Listen();
        relay.Port = ((IPEndPoint)relay._listener.LocalEndpoint).Port;
        return relay;
    }

    private void Listen()
    {
        _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Start();
        _accepting = AcceptAsync(_listener, _cut.Token);
    }

    private async Task AcceptAsync(TcpListener listener, CancellationToken cut)
    {
        while (!cut.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await listener.AcceptTcpClientAsync(cut);
            }
            catch (Exception) when (cut.IsCancellationRequested)
            {
                return;
            }

            var outbound = new TcpClient();
            try
            {
                await outbound.ConnectAsync(_host, _port, cut);
            }
            catch (Exception)
            {
                inbound.Dispose();
                outbound.Dispose();
                continue;
            }

            lock (_connections)
            {
                _connections.Add(inbound);
                _connections.Add(outbound);
            }

            _ = PumpAsync(inbound, outbound, cut);
            _ = PumpAsync(outbound, inbound, cut);
        }
    }

    /// <summary>Copies one way until either side closes; then closes both, as a network would: a client that went away
    /// (a killed manager) must not leave its server connection open, holding locks, until the relay goes.</summary>
    private async Task PumpAsync(TcpClient from, TcpClient to, CancellationToken cut)
    {
        try
        {
            var buffer = new byte[81_920];
            var (reading, writing) = (from.GetStream(), to.GetStream());
            int read;
            while ((read = await reading.ReadAsync(buffer, cut)) > 0)
            {
                if (Latency > TimeSpan.Zero)
                {
                    await Task.Delay(Latency, cut);
                }

                await writing.WriteAsync(buffer.AsMemory(0, read), cut);
            }
        }
        catch (Exception)
        {
            // cut, or either side closed
        }

        from.Dispose();
        to.Dispose();
    }

    /// <summary>The server becomes unreachable: open connections are reset, new ones refused.</summary>
    public void Cut()
    {
        _cut.Cancel();
        _listener.Stop();
        lock (_connections)
        {
            foreach (var connection in _connections)
            {
                connection.Client?.Close(0);
                connection.Dispose();
            }

            _connections.Clear();
        }
    }

    /// <summary>The server is reachable again, on the same port.</summary>
    public async Task RestoreAsync()
    {
        await _accepting;
        _cut.Dispose();
        _cut = new CancellationTokenSource();
        _listener = new TcpListener(IPAddress.Loopback, Port);
        Listen();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_cut.IsCancellationRequested)
        {
            Cut();
        }

        await _accepting;
        _cut.Dispose();
    }
}
