using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using Propeller.Application.Changes;
using Propeller.Contracts.Events;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Manager.Http;
using Propeller.Manager.Tasks;

namespace Propeller.Manager.Events;

/// <summary>
/// <c>GET /events</c> (beyond the original): a server-sent-events stream of committed task and proplet changes, for
/// the dashboard and <c>propeller task watch</c>. Events: <c>hello</c> once connected, <c>task</c>
/// (<see cref="TaskChangedJson"/>), <c>proplet</c> (<see cref="PropletChangedJson"/>), <c>resync</c> when the reader
/// fell behind and changes were dropped (reload what you show), <c>ping</c> every 15 s of quiet. Filters:
/// <c>?task=ID</c> (that task only), <c>?types=task,proplet</c>. Fed by <see cref="IChangeFeed"/>: this node's
/// commits; there is no replay, so a client reloads what it shows whenever it (re)connects.
/// </summary>
internal static class EventEndpoints
{
    private static readonly TimeSpan PingInterval = TimeSpan.FromSeconds(15);

    /// <summary>How many streams one reader remembers the newest sent version of.</summary>
    private const int MaxStreamsTracked = 10_000;

    public static IEndpointRouteBuilder MapEventEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/events", Stream).WithName("events")
            .WithSummary("Follow changes (server-sent events)")
            .WithDescription("A text/event-stream of task and proplet changes as they are committed (events `task` and `proplet`, a comment every 15 s to keep the connection open).")
            .Query("task", "Only this task's changes (its id).")
            .Query("types", "A comma-separated list of task and proplet (default both).")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .Refuses(400);
        return app;
    }

    private static IResult Stream(HttpRequest request, IChangeFeed feed, IHostApplicationLifetime lifetime)
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

        // Subscribe before the response starts, so nothing committed after this request arrived is missed.
        var subscription = feed.Subscribe();
        return TypedResults.ServerSentEvents(ReadAsync(subscription, onlyStream, types.Contains("task"), types.Contains("proplet"), request.HttpContext.RequestAborted, lifetime.ApplicationStopping));
    }

    private static async IAsyncEnumerable<SseItem<object>> ReadAsync(
        ChangeSubscription subscription, string? onlyStream, bool tasks, bool proplets, CancellationToken requestAborted, CancellationToken stopping,
        [EnumeratorCancellation] CancellationToken enumeration = default)
    {
        using var _ = subscription;

        // The stream also ends (cleanly) when the host stops: an open stream would otherwise hold Kestrel's graceful
        // shutdown for the whole shutdown timeout, and the hosted services after it would stop with a cancelled token.
        using var ending = CancellationTokenSource.CreateLinkedTokenSource(requestAborted, stopping, enumeration);
        var cancellationToken = ending.Token;
        yield return new SseItem<object>(new { at = DateTimeOffset.UtcNow }, "hello") { ReconnectionInterval = TimeSpan.FromSeconds(1) };
        var reader = subscription.Reader;
        // The newest version sent per stream: each commit is announced after it, so two commits on one stream can be
        // announced out of order; an older one after a newer one is not sent (a client would show a state gone by).
        var sent = new Dictionary<string, long>(StringComparer.Ordinal);
        Task<bool>? waiting = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            // One pending wait across pings; WaitAsync's timer goes away with each answer (no timer per change).
            waiting ??= reader.WaitToReadAsync(cancellationToken).AsTask();
            bool? open;
            try
            {
                open = await waiting.WaitAsync(PingInterval, cancellationToken);
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
                yield return subscription.Overflowed() ? Resync() : new SseItem<object>(new { at = DateTimeOffset.UtcNow }, "ping");
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

                if (sent.TryGetValue(notice.StreamId, out var newest) && notice.Version <= newest)
                {
                    continue;
                }

                if (sent.Count >= MaxStreamsTracked)
                {
                    sent.Clear(); // bounded: a long-lived stream over many tasks keeps only the recent ones
                }

                sent[notice.StreamId] = notice.Version;

                switch (notice.State)
                {
                    case TaskState task when tasks:
                        yield return new SseItem<object>(
                            new TaskChangedJson(task.Id.ToString(), notice.Version, task.Deleted, task.Deleted ? null : TaskMapping.ToJson(task)), "task");
                        break;
                    case PropletState proplet when proplets:
                        yield return new SseItem<object>(
                            new PropletChangedJson(proplet.Id.Value, notice.Version, proplet.Name, proplet.Offline, proplet.Deleted), "proplet");
                        break;
                }
            }

            // After the backlog: the dropped change is newer than what was buffered, so a client reloading on resync
            // must not have its reload overwritten by the older changes that were still queued.
            if (subscription.Overflowed())
            {
                yield return Resync();
            }
        }
    }

    private static SseItem<object> Resync() =>
        new(new { reason = "changes were dropped while this reader was behind" }, "resync");
}
