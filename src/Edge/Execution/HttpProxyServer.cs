using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;

namespace Propeller.Edge.Execution;

/// <summary>
/// The listener of one served HTTP proxy component (spec §2.11): Kestrel on 0.0.0.0 (another address for `serve --addr`)
/// and the port from the task's cli_args,
/// else the first free one of PROPLET_HTTP_PROXY_PORT and the 99 after it. Disposing it stops Kestrel and frees the port.
/// </summary>
internal sealed class HttpProxyServer : IAsyncDisposable
{
    public const int RangeSize = 100;

    private readonly WebApplication _app;

    private HttpProxyServer(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    /// <summary>
    /// The port the original reads from cli_args (<c>--port N</c>, <c>--addr host:N</c>, <c>--port=N</c>,
    /// <c>--addr=host:N</c>: the text after the last ':'), null when none is given, or an error for one that is not a port.
    /// </summary>
    public static (int? Port, string? Error) RequestedPort(IReadOnlyList<string> args)
    {
        if (Requested(args) is not { Value: var value })
        {
            return (null, null);
        }

        var text = value[(value.LastIndexOf(':') + 1)..];
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65_536
            ? (port, null)
            : (null, $"Invalid HTTP proxy port in cli_args: '{value}'");
    }

    /// <summary>The address the cli_args' <c>--addr HOST:N</c> names (<see cref="ParseAddress"/>), null for none, a
    /// <c>--port</c>, or a HOST that is no address.</summary>
    public static IPAddress? RequestedHost(IReadOnlyList<string> args) =>
        Requested(args) is ("--addr", var value) && ParseAddress(value) is { Error: null, Bind: var bind } ? bind : null;

    /// <summary>HOST:PORT (an IPv6 host in brackets; localhost is the IPv4 loopback), the port 1–65535.</summary>
    public static (string Host, int Port, IPAddress Bind, string? Error) ParseAddress(string address)
    {
        ArgumentNullException.ThrowIfNull(address);
        var split = address.LastIndexOf(':');
        var host = split > 0 ? address[..split] : "";
        IPAddress? bind = host == "localhost" ? IPAddress.Loopback : IPAddress.TryParse(host.Trim('[', ']'), out var ip) ? ip : null;
        return split > 0 && bind is not null
               && int.TryParse(address[(split + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65_536
            ? (host, port, bind, null)
            : ("", 0, IPAddress.Any, $"--addr {address}: expected HOST:PORT (an IP address or localhost, and a port)");
    }

    /// <summary>The first <c>--port</c> or <c>--addr</c> of <paramref name="args"/>, either form, with its value ("" when
    /// it is missing), or null.</summary>
    private static (string Option, string Value)? Requested(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] is "--port" or "--addr")
            {
                return (args[i], i + 1 < args.Count ? args[i + 1] : "");
            }

            if (args[i].StartsWith("--port=", StringComparison.Ordinal) || args[i].StartsWith("--addr=", StringComparison.Ordinal))
            {
                return (args[i][..6], args[i][7..]);
            }
        }

        return null;
    }

    /// <summary>Listens on <paramref name="port"/>, or on the first free port of the range from <paramref name="rangeStart"/>.</summary>
    public static async Task<(HttpProxyServer? Server, string? Error)> StartAsync(
        int? port, int rangeStart, RequestDelegate handler, CancellationToken cancellationToken, IPAddress? address = null)
    {
        address ??= IPAddress.Any;
        if (port is { } fixedPort)
        {
            try
            {
                return (await ListenAsync(address, fixedPort, handler, cancellationToken), null);
            }
            catch (Exception ex) when (ex is IOException or SocketException)
            {
                // IOException: Kestrel's "address in use"; SocketException: the rest, e.g. a port below 1024 without the
                // right to bind it (it escaped as the task's internal error).
                return (null, $"Failed to bind HTTP proxy to port {fixedPort}: {ex.Message}");
            }
        }

        var last = Math.Min(rangeStart + RangeSize - 1, 65_535);
        for (var candidate = rangeStart; candidate <= last; candidate++)
        {
            if (!Free(candidate))
            {
                continue;
            }

            try
            {
                return (await ListenAsync(address, candidate, handler, cancellationToken), null);
            }
            catch (Exception ex) when (ex is IOException or SocketException)
            {
                // taken between the probe and Kestrel's bind, or not ours to bind: try the next one
            }
        }

        return (null, $"No available port found in range {rangeStart}-{last}");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _app.StopAsync(CancellationToken.None);
        }
        finally
        {
            await _app.DisposeAsync();
        }
    }

    /// <summary>The served app's configuration (its sources: none), for the tests.</summary>
    internal IConfiguration Configuration => _app.Configuration;

    private static async Task<HttpProxyServer> ListenAsync(IPAddress address, int port, RequestDelegate handler, CancellationToken cancellationToken)
    {
        // An empty builder: no configuration sources at all, Kestrel's core without its configuration binding. The slim
        // builder read appsettings*.json of the working directory (watched by a recursive inotify watcher per served proxy:
        // the user's 128 inotify instances ran out and Build threw, reported as a failure to bind) and ASPNETCORE_*, and
        // its Kestrel took extra endpoints (Kestrel:Endpoints) from them: ports the task never asked for, bound with it.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(address, port);
        });
        var app = builder.Build();
        app.Run(handler);
        try
        {
            await app.StartAsync(cancellationToken);
            return new HttpProxyServer(app, port);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }

    /// <summary>Whether nothing listens on <paramref name="port"/> (a quick probe before starting Kestrel there).</summary>
    internal static bool Free(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(IPAddress.Any, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
