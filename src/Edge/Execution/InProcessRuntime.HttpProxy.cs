using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Propeller.Edge.Tasks;
using Propeller.WasmHost;
using Propeller.WasmHost.Components;
using Propeller.WasmHost.Components.Http;

namespace Propeller.Edge.Execution;

/// <summary>
/// HTTP proxy components (spec §2.11, ADR 0015): with PROPLET_HTTP_ENABLED a component exporting
/// <c>wasi:http/incoming-handler</c> is served on its own port, "started at port N" is the task's result at once, and each
/// request gets a fresh instance with the task's env and limits (fuel, memory, and its timeout per request). A failed
/// request is a 500 and a log line; the stop ends the listener and frees the port. Each request's guest runs on Kestrel's
/// pool thread (a hop to a <see cref="GuestThreads"/> thread each way halved the requests a second), at most
/// <see cref="HttpProxyBound"/>'s Running of one served task at once, so a spinning handler holds no more than half the
/// pool's minimum threads; up to its Queued more wait for them, and a request beyond both is answered 503 at once.
/// </summary>
public sealed partial class InProcessRuntime
{
    /// <summary>Headers Kestrel writes itself; a component's own would contradict the body it sends.</summary>
    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "connection", "content-length", "keep-alive", "transfer-encoding", "upgrade",
    };

    /// <summary>
    /// Requests of one served task whose guests run at once (Running: half the cores, at least one: each holds a .NET pool
    /// thread while it computes, and the pool starts with one per core) and requests that may wait for them (Queued: a burst of clients is served,
    /// not refused). Their time limit starts when they run. Beyond both: 503 with Retry-After (docs/edge.md).
    /// </summary>
    internal (int Running, int Queued) HttpProxyBound { get; init; } = (Math.Max(1, System.Environment.ProcessorCount / 2), 64);

    /// <summary>The address served proxies listen on: all of the host's, as the original's (spec §2.11); `serve --addr` names one.</summary>
    internal System.Net.IPAddress ProxyAddress { get; init; } = System.Net.IPAddress.Any;

    /// <summary>Runs on the guest thread before a served proxy is compiled: a test holds an uninterruptible compile there.</summary>
    internal Action? BeforeProxyLink { get; init; }

    public bool ServesHttpProxy(byte[] binary) => _settings.HttpEnabled && WasmBinary.IsComponent(binary) && WasmBinary.IsHttpProxy(binary);

    private async Task<TaskOutcome> ServeHttpProxyAsync(RunningTask task, byte[] binary)
    {
        var (port, portError) = HttpProxyServer.RequestedPort(task.Request.CliArgs);
        if (portError is not null)
        {
            return TaskOutcome.Failure(portError);
        }

        // Compiled on a guest thread the task knows of (its slot goes back once that returns), and a stop or shutdown during
        // the compile, which nothing interrupts, is answered after the grace period as a run's is; before, only when the
        // compile ended. A proxy linked after that is disposed unused.
        var link = GuestThreads.RunAsync(() =>
        {
            BeforeProxyLink?.Invoke();
            return LinkProxy(binary);
        });
        if (await WaitGuestAsync(task, link, static linked => linked.Proxy?.Dispose()) is not (false, var (proxy, error)))
        {
            return Stopped(task)!;
        }

        if (proxy is null)
        {
            return TaskOutcome.Failure(error!);
        }

        // Disposed after the server has stopped, so no request still enters or leaves it.
        using var gate = new ProxyGate(HttpProxyBound.Running, HttpProxyBound.Queued);
        using (proxy)
        {
            HttpProxyServer? server;
            string? bindError;
            try
            {
                (server, bindError) = await HttpProxyServer.StartAsync(port, _settings.HttpProxyPort, context => HandleAsync(task, proxy, gate, context), task.Aborted, ProxyAddress);
            }
            catch (OperationCanceledException) when (task.Aborted.IsCancellationRequested)
            {
                // Stopped while Kestrel started: the stopped result, not the task's internal error.
                return Stopped(task) ?? TaskOutcome.Failure($"Task {task.Id} was stopped before completion");
            }

            if (server is null)
            {
                return TaskOutcome.Failure(bindError!);
            }

            await using (server)
            {
                EdgeLog.HttpProxyStarted(_logger, task.Id, server.Port);
                task.ReportStarted($"started at port {server.Port}");
                try
                {
                    await Task.Delay(Timeout.Infinite, task.Aborted);
                }
                catch (OperationCanceledException)
                {
                    // stopped, or the proplet shuts down
                }
            }

            EdgeLog.HttpProxyStopped(_logger, task.Id, server.Port);
        }

        return Stopped(task) ?? TaskOutcome.Failure($"Task {task.Id} was stopped before completion");
    }

    private (HttpProxyComponent? Proxy, string? Error) LinkProxy(byte[] binary)
    {
        if (Compile(binary, out var component) is { } error)
        {
            return (null, error);
        }

        try
        {
            return (HttpProxyComponent.Create(_engine.Engine, component!), null);
        }
        catch (InvalidOperationException ex)
        {
            return (null, $"Failed to link HTTP proxy component: {ex.Message}");
        }
    }

    private async Task HandleAsync(RunningTask task, HttpProxyComponent proxy, ProxyGate gate, HttpContext context)
    {
        // Admitted (a place among the bound's Running and Queued) before the body is read: a request turned away costs no
        // body, and only admitted ones hold one. Before, every connection's body was read in full first (Kestrel allows
        // 30 MB each, and connections are not bounded), then most were refused.
        if (!gate.TryAdmit())
        {
            await RefuseAsync(context, task);
            return;
        }

        var running = false;
        try
        {
            var incoming = await ReadRequestAsync(context);
            using var waiting = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, task.Aborted);
            if (!(running = await gate.RunAsync(waiting.Token)))
            {
                await RefuseAsync(context, task);
                return;
            }

            await ServeAsync(task, proxy, gate, incoming, context);
        }
        finally
        {
            if (!running)
            {
                gate.Leave();
            }
        }
    }

    private static Task RefuseAsync(HttpContext context, RunningTask task)
    {
        // Over the bound, or the task stopped while the request waited.
        context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
        context.Response.Headers.RetryAfter = "1";
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(task.Aborted.IsCancellationRequested
            ? "HTTP proxy component is stopping\n"
            : "HTTP proxy component is busy: too many requests at once\n", context.RequestAborted);
    }

    /// <summary>The request as the component gets it, its body read (into one array when its length is announced).</summary>
    private static async Task<HttpProxyRequest> ReadRequestAsync(HttpContext context)
    {
        var request = context.Request;
        byte[] body;
        // Sized from Content-Length only within Kestrel's body limit (a header claiming 2 GB must not allocate it: beyond
        // the limit the read below fails as Kestrel's 413).
        if (request.ContentLength is { } length && length <= (context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize ?? 0))
        {
            body = GC.AllocateUninitializedArray<byte>((int)length);
            await request.Body.ReadExactlyAsync(body, context.RequestAborted);
        }
        else
        {
            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer, context.RequestAborted);
            body = buffer.ToArray();
        }

        var headers = new List<KeyValuePair<string, byte[]>>();
        foreach (var (name, values) in request.Headers)
        {
            foreach (var value in values)
            {
                headers.Add(new(name, Encoding.Latin1.GetBytes(value ?? "")));
            }
        }

        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? raw : request.Path + request.QueryString;
        return new HttpProxyRequest(request.Method, target, request.Scheme, request.Host.Value ?? "", headers, body);
    }

    /// <summary>Runs an admitted request that has its running slot (released here) and writes its answer.</summary>
    private async Task ServeAsync(RunningTask task, HttpProxyComponent proxy, ProxyGate gate, HttpProxyRequest incoming, HttpContext context)
    {
        HttpProxyResponse response;
        try
        {
            response = Serve(task, proxy, incoming, context.RequestAborted);
        }
        finally
        {
            gate.Exit();
        }

        if (response.Error is { } error)
        {
            EdgeLog.HttpProxyRequestFailed(_logger, task.Id, incoming.Method, incoming.PathWithQuery, error, response.Stderr.Length > 0 ? ", stderr: " + response.Stderr.TrimEnd() : "");
            context.Response.StatusCode = StatusCodes.Status500InternalServerError;
            context.Response.ContentType = "text/plain; charset=utf-8";
            await context.Response.WriteAsync($"HTTP proxy component failed: {error}\n", context.RequestAborted);
            return;
        }

        context.Response.StatusCode = response.Status;
        foreach (var (name, value) in response.Headers)
        {
            if (!HopByHop.Contains(name))
            {
                context.Response.Headers.Append(name, Encoding.Latin1.GetString(value));
            }
        }

        context.Response.ContentLength = response.Body.Length;
        await context.Response.Body.WriteAsync(response.Body, context.RequestAborted);
    }

    /// <summary>One request on a fresh store: the task's fuel and memory limits, its timeout for this request, the task's
    /// stop and the client going away (<paramref name="requestAborted"/>), all seen by the epoch check and by a
    /// <c>pollable.block</c>. Without the client's abort a handler that never returns, with no --timeout, kept its slot
    /// after its client left, and once <see cref="HttpProxyBound"/>'s Running were held so, every client got 503.</summary>
    private HttpProxyResponse Serve(RunningTask task, HttpProxyComponent proxy, HttpProxyRequest request, CancellationToken requestAborted)
    {
        var limits = task.Request.Limits;
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(task.Aborted, requestAborted);
        if (limits.Timeout is { } timeout)
        {
            ended.CancelAfter(timeout);
        }

        string Reason() => task.Reason != StopReason.None
            ? $"task {task.Id} ended: {task.Reason}"
            : requestAborted.IsCancellationRequested ? "the client closed the request"
            : $"the request exceeded the task's time limit of {limits.Timeout?.TotalSeconds:0.###} s";

        using var store = NewStore(task, null, out var ticking, () =>
        {
            if (ended.IsCancellationRequested)
            {
                throw new OperationCanceledException(Reason());
            }
        });
        using var held = ticking;
        try
        {
            var response = proxy.Handle(
                store, request, new HttpProxyOptions(Environment(task.Request), [task.Request.Name], _settings.OutputLimit, ended.Token, EndedReason: Reason));
            return response.Error == "wasm trap: all fuel consumed"
                ? response with { Error = $"wasm trap: all fuel consumed (fuel limit {limits.Fuel})" }
                : response;
        }
        catch (OperationCanceledException ex)
        {
            return HttpProxyResponse.Failed(ex.Message);
        }
    }

    /// <summary>The bound on one served task's requests (<see cref="HttpProxyBound"/>): a slot to run, or a place to wait
    /// for one; false when there is neither, or the wait was cancelled (the client went away, the task stopped).</summary>
    private sealed class ProxyGate(int running, int queued) : IDisposable
    {
        private readonly SemaphoreSlim _running = new(running, running);
        private int _admitted; // running + waiting (reading its body, or for a slot)

        /// <summary>A place among Running + Queued; false beyond them. Then <see cref="RunAsync"/>, or
        /// <see cref="Leave"/> when the request ends before it.</summary>
        public bool TryAdmit()
        {
            if (Interlocked.Increment(ref _admitted) > running + queued)
            {
                Interlocked.Decrement(ref _admitted);
                return false;
            }

            return true;
        }

        /// <summary>Waits for a running slot for an admitted request; false (still admitted: <see cref="Leave"/>) when
        /// cancelled first.</summary>
        public async Task<bool> RunAsync(CancellationToken cancellationToken)
        {
            try
            {
                await _running.WaitAsync(cancellationToken);
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        /// <summary>An admitted request that did not run ends.</summary>
        public void Leave() => Interlocked.Decrement(ref _admitted);

        /// <summary>After a true <see cref="RunAsync"/>, once the request's guest is done.</summary>
        public void Exit()
        {
            _running.Release();
            Interlocked.Decrement(ref _admitted);
        }

        public void Dispose() => _running.Dispose();
    }

    /// <summary>The env a task's guest sees: its own, plus PROPLET_ID unless it sets one.</summary>
    private List<KeyValuePair<string, string>> Environment(StartRequest request)
    {
        var env = request.Env.ToList();
        if (!request.Env.ContainsKey("PROPLET_ID"))
        {
            env.Add(new("PROPLET_ID", _settings.EntityId));
        }

        return env;
    }
}
