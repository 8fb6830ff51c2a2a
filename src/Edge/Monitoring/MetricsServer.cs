using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Propeller.Edge.Monitoring;

/// <summary>
/// PROPLET_METRICS_PORT (spec §4.2): <c>GET /metrics</c> in Prometheus text and <c>GET /health</c> →
/// <c>{"status":"ok","running_tasks":N}</c>; anything else is 404. A port already in use (several proplets on one host)
/// is a warning, not a failure: the proplet runs on without the endpoint. A request that fails for any other reason (a
/// series that throws) is logged and answered 500; the serve loop goes on. It used to end the loop: the port stayed
/// bound with nothing answering, and <see cref="DisposeAsync"/> rethrew, which cut the proplet's shutdown short. A HEAD
/// request gets the headers only: the managed HttpListener sent the body written after them too, and on a keep-alive
/// connection it was read as the start of the next response.
/// </summary>
public sealed class MetricsServer(int port, Func<IReadOnlyList<(string Name, string Type, double Value)>> series, Func<int> running, ILogger logger) : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private Task? _serving;

    public bool Start()
    {
        try
        {
            _listener.Prefixes.Add($"http://*:{port}/");
            _listener.Start();
        }
        catch (HttpListenerException ex)
        {
            EdgeLog.MetricsPortUnavailable(logger, port, ex.Message);
            return false;
        }

        _serving = ServeAsync();
        return true;
    }

    public async ValueTask DisposeAsync()
    {
        if (_listener.IsListening)
        {
            _listener.Stop();
        }

        _listener.Close();
        if (_serving is not null)
        {
            await _serving;
        }
    }

    /// <summary>Prometheus text exposition of <paramref name="values"/>.</summary>
    public static string Format(IReadOnlyList<(string Name, string Type, double Value)> values)
    {
        var text = new StringBuilder();
        foreach (var (name, type, value) in values)
        {
            text.Append(CultureInfo.InvariantCulture, $"# TYPE {name} {type}\n{name} {value.ToString("R", CultureInfo.InvariantCulture)}\n");
        }

        return text.ToString();
    }

    private async Task ServeAsync()
    {
        while (true)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return; // stopped
            }

            var path = context.Request.Url?.AbsolutePath;
            (int Status, string Type, string Body) answer;
            try
            {
                answer = path switch
                {
                    "/metrics" => (200, "text/plain; version=0.0.4", Format(series())),
                    "/health" => (200, "application/json", JsonSerializer.Serialize(new { status = "ok", running_tasks = running() })),
                    _ => (404, "text/plain", "not found\n"),
                };
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                EdgeLog.MetricsRequestFailed(logger, path, ex);
                answer = (500, "text/plain", "internal error\n");
            }

            await AnswerAsync(context, answer, logger);
        }
    }

    private static async Task AnswerAsync(HttpListenerContext context, (int Status, string Type, string Body) answer, ILogger logger)
    {
        try
        {
            var bytes = Encoding.UTF8.GetBytes(answer.Body);
            context.Response.StatusCode = answer.Status;
            context.Response.ContentType = answer.Type;
            context.Response.ContentLength64 = bytes.Length; // for HEAD too: the length a GET would have
            if (context.Request.HttpMethod != "HEAD")
            {
                await context.Response.OutputStream.WriteAsync(bytes, CancellationToken.None);
            }

            context.Response.Close();
        }
        catch (Exception ex) when (ex is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // the client went away, or the listener was stopped while answering
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Anything else ends this request, never the serve loop (which would leave the port bound with nothing answering).
            EdgeLog.MetricsAnswerFailed(logger, context.Request.Url?.AbsolutePath, ex);
            context.Response.Abort();
        }
    }
}
