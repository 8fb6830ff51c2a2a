using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json.Serialization;
using Propeller.Application.Changes;
using Propeller.Contracts.Events;
using Propeller.Contracts.Json;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Manager.Http;
using Propeller.Manager.Tasks;

namespace Propeller.Manager.Events;

/// <summary>
/// <c>GET /events</c> (beyond the original): a server-sent-events stream of committed task and proplet changes, for
/// the dashboard and <c>propeller task watch</c>. Events: <c>hello</c> once connected, <c>task</c>
/// (<see cref="TaskChangedJson"/>), <c>proplet</c> (<see cref="PropletChangedJson"/>), <c>resync</c> when the reader
/// fell behind and changes were dropped (reload what you show), <c>ping</c> after 15 s in which nothing was written.
/// Filters: <c>?task=ID</c> (that task only), <c>?types=task,proplet</c>. Fed by <see cref="IChangeFeed"/>: this node's
/// commits; there is no replay, so a client reloads what it shows whenever it (re)connects. A node serves at most
/// MANAGER_EVENTS_MAX_STREAMS streams at once (<see cref="EventReaders"/>): past it a new one is answered 503, which the
/// dashboard and the CLI answer by reading again later or by long polling. Open streams and the resyncs sent because a
/// reader fell behind are in /metrics (<c>manager_event_streams</c>, <c>manager_event_resyncs_total</c>).
/// </summary>
internal static class EventEndpoints
{
    public static IEndpointRouteBuilder MapEventEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/events", Stream).WithName("events")
            .WithSummary("Follow changes (server-sent events)")
            .WithDescription("A text/event-stream of task and proplet changes as they are committed (events `task` and `proplet`, `ping` after 15 s in which nothing was written, to keep the connection open).")
            .Query("task", "Only this task's changes (its id).")
            .Query("types", "A comma-separated list of task and proplet (default both).")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .Refuses(400, 503);
        return app;
    }

    private static IResult Stream(HttpRequest request, IChangeFeed feed, EventReaders readers, IHostApplicationLifetime lifetime)
    {
        string? onlyStream = null;
        if (request.Query["task"].FirstOrDefault() is { Length: > 0 } task)
        {
            if (!Guid.TryParse(task, out var guid))
            {
                return ApiResults.BadRequest("task must be a task id");
            }

            onlyStream = Application.Tasks.TaskAggregate.StreamId(new TaskId(guid));
        }

        var types = request.Query["types"].FirstOrDefault() is { Length: > 0 } list ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : ["task", "proplet"];
        if (types.Length == 0 || types.Any(t => t is not ("task" or "proplet")))
        {
            return ApiResults.BadRequest("types must be a comma-separated list of task and proplet");
        }

        // Each stream may buffer up to ChangeSubscription.DefaultByteBudget for a reader that stopped reading, so their
        // number is bounded; the place is taken here and given back when the stream ends.
        if (readers.TryEnter() is not { } place)
        {
            request.HttpContext.Response.Headers.RetryAfter = "5";
            return ApiResults.Error(StatusCodes.Status503ServiceUnavailable, $"this manager already serves {readers.Max} event streams (MANAGER_EVENTS_MAX_STREAMS); try again later");
        }

        // Given back by the stream's end, or by the request's end if the stream never started (disposed once).
        request.HttpContext.Response.RegisterForDispose(place);

        // Subscribe before the response starts, so nothing committed after this request arrived is missed.
        var subscription = feed.Subscribe();
        var limits = request.HttpContext.RequestServices.GetService<Limits>() ?? Limits.Default;
        return TypedResults.ServerSentEvents(ReadAsync(place, subscription, onlyStream, types.Contains("task"), types.Contains("proplet"), limits, request.HttpContext.RequestAborted, lifetime.ApplicationStopping));
    }

    private static async IAsyncEnumerable<SseItem<object>> ReadAsync(
        IDisposable place, ChangeSubscription subscription, string? onlyStream, bool tasks, bool proplets, Limits limits, CancellationToken requestAborted, CancellationToken stopping,
        [EnumeratorCancellation] CancellationToken enumeration = default)
    {
        using var _ = place;
        using var __ = subscription;

        // The stream also ends (cleanly) when the host stops: an open stream would otherwise hold Kestrel's graceful
        // shutdown for the whole shutdown timeout, and the hosted services after it would stop with a cancelled token.
        using var ending = CancellationTokenSource.CreateLinkedTokenSource(requestAborted, stopping, enumeration);
        var cancellationToken = ending.Token;
        yield return new SseItem<object>(new Tick(DateTimeOffset.UtcNow), "hello") { ReconnectionInterval = TimeSpan.FromSeconds(1) };
        // Quiet is measured from the last thing written, not from the last wake-up: notices this reader filters out
        // (?task=, ?types=) wake it and write nothing, and on a busy manager a timer restarted by each of them never
        // fired, so a proxy cut the filtered stream as idle (commonly after 60 s).
        var lastWrite = Stopwatch.GetTimestamp();
        var reader = subscription.Reader;
        var sent = new SentVersions(limits.MaxStreamsTracked);
        Task<bool>? waiting = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            // One pending wait across pings; WaitAsync's timer goes away with each answer (no timer per change).
            waiting ??= reader.WaitToReadAsync(cancellationToken).AsTask();
            var quiet = limits.PingInterval - Stopwatch.GetElapsedTime(lastWrite);
            bool? open = null;
            try
            {
                if (quiet > TimeSpan.Zero)
                {
                    open = await waiting.WaitAsync(quiet, cancellationToken);
                }
            }
            catch (TimeoutException)
            {
                open = null;
            }
            catch (OperationCanceledException)
            {
                yield break; // the client went away, or the host is stopping
            }

            if (open is null)
            {
                // A drop seen by nothing yet (it happened after the last drain) must not wait for the next change.
                yield return subscription.Overflowed() ? Resync() : new SseItem<object>(new Tick(DateTimeOffset.UtcNow), "ping");
                lastWrite = Stopwatch.GetTimestamp();
                continue;
            }

            waiting = null;
            if (open == false)
            {
                yield break;
            }

            while (reader.TryRead(out var notice))
            {
                if (onlyStream is not null && !string.Equals(notice.StreamId, onlyStream, StringComparison.Ordinal))
                {
                    continue;
                }

                if (!sent.Newer(notice.StreamId, notice.Version))
                {
                    continue;
                }

                switch (notice.State)
                {
                    case TaskState task when tasks:
                        yield return new SseItem<object>(
                            new TaskChangedJson(task.Id.ToString(), notice.Version, task.Deleted, task.Deleted ? null : TaskMapping.ToJson(task)), "task");
                        lastWrite = Stopwatch.GetTimestamp();
                        break;
                    case PropletState proplet when proplets:
                        yield return new SseItem<object>(
                            new PropletChangedJson(proplet.Id.Value, notice.Version, proplet.Name, proplet.Offline, proplet.Deleted), "proplet");
                        lastWrite = Stopwatch.GetTimestamp();
                        break;
                }
            }

            // After the backlog: the dropped change is newer than what was buffered, so a client reloading on resync
            // must not have its reload overwritten by the older changes that were still queued.
            if (subscription.Overflowed())
            {
                yield return Resync();
                lastWrite = Stopwatch.GetTimestamp();
            }
        }
    }

    private static readonly Counter<long> Resyncs = ManagerMeter.Meter.CreateCounter<long>(
        "manager_event_resyncs_total", "{event}", "resync events sent on /events because a reader fell behind and changes meant for it were dropped");

    private static SseItem<object> Resync()
    {
        Resyncs.Add(1);
        return new(new { reason = "changes were dropped while this reader was behind" }, "resync");
    }

    /// <summary><c>hello</c>'s and <c>ping</c>'s data: the time in UTC with <c>Z</c>, as every time the API writes.</summary>
    private sealed record Tick([property: JsonPropertyName("at"), JsonConverter(typeof(WireTimeConverter))] DateTimeOffset At);

    /// <summary>How often a quiet stream is pinged, how many streams a reader remembers (tests lower them: registered
    /// as a service, they replace <see cref="Default"/>).</summary>
    internal sealed record Limits(TimeSpan PingInterval, int MaxStreamsTracked)
    {
        public static readonly Limits Default = new(TimeSpan.FromSeconds(15), 10_000);
    }

    /// <summary>
    /// The newest version sent per stream: each commit is announced after it, so two commits on one stream can be
    /// announced out of order; an older one after a newer one is not sent (a client would show a state gone by).
    /// Bounded for a long-lived reader over many tasks: past the limit the stream sent least recently is forgotten, never
    /// the one just sent. (Forgetting them all at once let a late older notice through right after, out of order; a
    /// stream is now forgotten only after as many other streams were sent since its last notice, far more than the few
    /// commits that can pass each other between committing and being announced.)
    /// </summary>
    private sealed class SentVersions(int capacity)
    {
        private readonly Dictionary<string, LinkedListNode<(string StreamId, long Version)>> _byStream = new(StringComparer.Ordinal);
        private readonly LinkedList<(string StreamId, long Version)> _leastRecentFirst = new();

        /// <summary>True, and remembered as the newest sent, when <paramref name="version"/> is newer than the stream's last sent.</summary>
        public bool Newer(string streamId, long version)
        {
            if (_byStream.TryGetValue(streamId, out var node))
            {
                if (version <= node.Value.Version)
                {
                    return false;
                }

                _leastRecentFirst.Remove(node);
                node.Value = (streamId, version);
                _leastRecentFirst.AddLast(node);
                return true;
            }

            if (_byStream.Count >= capacity)
            {
                _byStream.Remove(_leastRecentFirst.First!.Value.StreamId);
                _leastRecentFirst.RemoveFirst();
            }

            _byStream[streamId] = _leastRecentFirst.AddLast((streamId, version));
            return true;
        }
    }
}
