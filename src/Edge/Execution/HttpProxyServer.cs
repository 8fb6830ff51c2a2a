using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

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
        ArgumentNullException.ThrowIfNull(args);
        for (var i = 0; i < args.Count; i++)
        {
            string? value = null;
            if (args[i] is "--port" or "--addr")
            {
                value = i + 1 < args.Count ? args[i + 1] : "";
            }
            else if (args[i].StartsWith("--port=", StringComparison.Ordinal) || args[i].StartsWith("--addr=", StringComparison.Ordinal))
            {
                value = args[i][7..];
            }

            if (value is null)
            {
                continue;
            }

            var text = value[(value.LastIndexOf(':') + 1)..];
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65_536
                ? (port, null)
                : (null, $"Invalid HTTP proxy port in cli_args: '{value}'");
        }

        return (null, null);
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
            catch (IOException ex)
            {
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
            catch (IOException)
            {
                // taken between the probe and Kestrel's bind: try the next one
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

    private static async Task<HttpProxyServer> ListenAsync(IPAddress address, int port, RequestDelegate handler, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
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
