using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Propeller.Cli.Http;
using Propeller.Cli.Output;
using Spectre.Console;

namespace Propeller.Cli.Tasks;

/// <summary>
/// Waits for a task's attempt to end: by long polling (<c>GET /tasks/{id}?wait=</c>, one request per 30 s) with a
/// live status line on a terminal, or by following <c>GET /events?task=</c> and printing every change (watch).
/// </summary>
internal static class TaskWaiter
{
    /// <summary>The exit code when the wait ran out before the task ended.</summary>
    public const int TimedOut = 4;

    private static readonly TimeSpan PollWait = TimeSpan.FromSeconds(30);

    public static async Task<JsonElement> PollAsync(CliContext context, string id, string what, Stopwatch clock, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        var wait = PollLoopAsync(context, id, resilient: false, deadline.Token);
        if (context.Interactive && !context.Json)
        {
            await context.Console.Status().StartAsync(what, async status =>
            {
                while (!wait.IsCompleted)
                {
                    status.Status = $"{what} {clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)}s";
                    await Task.WhenAny(wait, Task.Delay(100, CancellationToken.None));
                }
            });
        }

        return await DeadlineAsync(wait, id, timeout, cancellationToken);
    }

    /// <summary>
    /// Follows the task's events, printing each state it reaches, until its attempt ends. <paramref name="subscribed"/>
    /// runs once the stream's headers have arrived (the manager has subscribed by then, so a start it makes cannot be
    /// missed), or once the stream was refused.
    /// </summary>
    public static async Task<JsonElement> WatchAsync(CliContext context, string id, Stopwatch clock, TimeSpan timeout, Func<Task>? subscribed, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        return await DeadlineAsync(FollowAsync(context, id, clock, subscribed, deadline.Token), id, timeout, cancellationToken);
    }

    private static async Task<JsonElement> FollowAsync(CliContext context, string id, Stopwatch clock, Func<Task>? subscribed, CancellationToken cancellationToken)
    {
        string? shown = null;
        void Show(JsonElement task)
        {
            var line = Tables.StateName(task) + (Tables.Str(task, "proplet_id") is { Length: > 0 } proplet ? " on " + proplet : "");
            if (line != shown && !context.Json)
            {
                context.Output.WriteLine($"+{clock.Elapsed.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)}s  {Printable.Line(line)}");
            }

            shown = line;
        }

        JsonElement Shown(JsonElement task)
        {
            Show(task);
            return task;
        }

        EventStream? stream;
        try
        {
            stream = await context.Manager.OpenEventsAsync("?task=" + Uri.EscapeDataString(id), cancellationToken);
        }
        catch (CliException ex) when (ex.ExitCode == CliException.Failed)
        {
            // Refused (a manager without /events: 404; a proxy that does not pass it on: 502, 503): long polling needs no
            // stream. `task run --watch` still starts its task (it was left pending, and waited for until --timeout).
            await context.Error.WriteLineAsync($"propeller: {Printable.Line(ex.Message)}; waiting by long polling instead");
            stream = null;
        }

        await using (stream)
        {
            if (subscribed is not null)
            {
                await subscribed();
            }

            return stream is null
                ? Shown(await PollLoopAsync(context, id, resilient: true, cancellationToken))
                : await FollowStreamAsync(context, id, stream, Show, Shown, cancellationToken);
        }
    }

    private static async Task<JsonElement> FollowStreamAsync(
        CliContext context, string id, EventStream stream, Action<JsonElement> show, Func<JsonElement, JsonElement> shown, CancellationToken cancellationToken)
    {
        // Its own token: an event still awaited when the task has ended (read again after a quiet while) is cancelled,
        // and waited for, before the enumerator is disposed (an async iterator cannot be disposed while it runs).
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await using var events = stream.ReadAsync(reading.Token).GetAsyncEnumerator(reading.Token);
        Task<bool>? next = null;
        try
        {
            var (task, version) = await CurrentAsync(context, id, cancellationToken);
            show(task);
            var quiet = Stopwatch.StartNew();
            while (!Tables.Ended(task))
            {
                next ??= events.MoveNextAsync().AsTask();
                if (!await ArrivesWithinAsync(next, context.Timing.Quiet - quiet.Elapsed, cancellationToken))
                {
                    // No change of the task for a while: the stream carries only the commits of the manager node it is
                    // connected to (docs/architecture.md), so the end committed by another node never comes on it, and a
                    // busy node never pings. The task is read again; a manager away now (IsAway) is asked again
                    // after the next quiet while (the stream, if it broke, ends the wait by long polling).
                    quiet.Restart();
                    try
                    {
                        var read = await CurrentAsync(context, id, cancellationToken);
                        if (read.Version >= version)
                        {
                            (task, version) = read;
                            show(task);
                        }
                    }
                    catch (CliException ex) when (IsAway(ex))
                    {
                        // asked again after the next quiet while
                    }

                    continue;
                }

                var more = await next;
                next = null;
                if (!more)
                {
                    return shown(await PollLoopAsync(context, id, resilient: true, cancellationToken)); // the stream ended or broke: finish by long polling
                }

                switch (events.Current.EventType)
                {
                    case "task":
                        using (var change = JsonDocument.Parse(events.Current.Data))
                        {
                            // Changes committed before the task was read may still be queued in the stream: not newer than
                            // what is shown, they would take it back to an earlier state.
                            var changed = change.RootElement.TryGetProperty("version", out var v) && v.TryGetInt64(out var n) ? n : long.MaxValue;
                            if (changed <= version)
                            {
                                continue;
                            }

                            if (change.RootElement.TryGetProperty("deleted", out var deleted) && deleted.GetBoolean())
                            {
                                throw new CliException($"task {id} was deleted", CliException.Failed);
                            }

                            task = change.RootElement.GetProperty("task").Clone();
                            version = changed;
                            quiet.Restart();
                        }

                        break;
                    case "resync":
                        // Changes were dropped: read again. (Not on hello: the task was read once the stream was open.)
                        (task, version) = await CurrentAsync(context, id, cancellationToken);
                        quiet.Restart();
                        break;
                    default:
                        continue;
                }

                show(task);
            }

            return task;
        }
        finally
        {
            if (next is { IsCompleted: false })
            {
                await reading.CancelAsync();
                await Task.WhenAny(next); // its cancellation is the end asked for, not a failure
            }
        }
    }

    /// <summary>Whether <paramref name="next"/> completes within <paramref name="within"/> (false at once when that is not positive).</summary>
    private static async Task<bool> ArrivesWithinAsync(Task<bool> next, TimeSpan within, CancellationToken cancellationToken)
    {
        if (next.IsCompleted || within <= TimeSpan.Zero)
        {
            return next.IsCompleted;
        }

        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var first = await Task.WhenAny(next, Task.Delay(within, timer.Token));
        await timer.CancelAsync();
        return first == next;
    }

    /// <summary>
    /// The task with the version it is at (the task's JSON has none): its history's last version (its last event), and the task replayed
    /// to that version, so the two agree whatever commits in between.
    /// </summary>
    private static async Task<(JsonElement Task, long Version)> CurrentAsync(CliContext context, string id, CancellationToken cancellationToken)
    {
        var path = "/tasks/" + Uri.EscapeDataString(id);
        var history = await context.Manager.GetAsync(path + "/history?last=1", cancellationToken);
        var version = history.EnumerateArray().Select(e => e.GetProperty("version").GetInt64()).DefaultIfEmpty(0).Max();
        var task = await context.Manager.GetAsync(
            version > 0 ? $"{path}?version={version.ToString(CultureInfo.InvariantCulture)}" : path, cancellationToken);
        return (task, version);
    }

    /// <summary>
    /// Whether a failure is the manager away for now, asked again by a watch: not reached (or not answering in time), or
    /// a gateway or load balancer before it answering 502, 503 or 504 while it restarts (the manager's own 503: PostgreSQL
    /// unavailable). Those ended the watch with exit 1 while a manager not reached at all was waited for. Other statuses
    /// are answers, and end it.
    /// </summary>
    private static bool IsAway(CliException ex) =>
        ex.ExitCode == CliException.Unreachable
        || ex.Status is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout;

    /// <summary>
    /// Long polls until the attempt ends. <paramref name="resilient"/> (a watch's polls, which follow a stream that ended
    /// as the manager restarted, or was refused): a manager away (<see cref="IsAway"/>) is asked again, 1 s later, then 2 s,
    /// up to 5 s, until --timeout; and an answer of a task not ended well before the wait (a manager stopping answers
    /// at once) is followed by a pause, not by the next poll at once.
    /// </summary>
    private static async Task<JsonElement> PollLoopAsync(CliContext context, string id, bool resilient, CancellationToken cancellationToken)
    {
        var path = "/tasks/" + Uri.EscapeDataString(id) + "?wait=" + ((int)PollWait.TotalSeconds).ToString(CultureInfo.InvariantCulture) + "s";
        var retry = TimeSpan.Zero;
        while (true)
        {
            var asked = Stopwatch.StartNew();
            JsonElement task;
            try
            {
                task = await context.Manager.GetAsync(path, PollWait, cancellationToken);
            }
            catch (CliException ex) when (resilient && IsAway(ex))
            {
                if (retry == TimeSpan.Zero)
                {
                    await context.Error.WriteLineAsync($"propeller: {Printable.Line(ex.Message)}; asking again until --timeout");
                }

                retry = retry == TimeSpan.Zero ? context.Timing.FirstRetry : TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, context.Timing.MaxRetry.Ticks));
                await Task.Delay(retry, cancellationToken);
                continue;
            }

            retry = TimeSpan.Zero;
            // An answer without a state is no task (another server at the URL, answering at once): reading it throws,
            // the unexpected answer it is, instead of asking again without pause until --timeout.
            _ = task.GetProperty("state").GetInt32();
            if (Tables.Ended(task))
            {
                return task;
            }

            if (resilient && asked.Elapsed < PollWait / 2)
            {
                await Task.Delay(context.Timing.EarlyAnswerPause, cancellationToken);
            }
        }
    }

    private static async Task<JsonElement> DeadlineAsync(Task<JsonElement> wait, string id, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            return await wait;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new CliException($"task {id} did not end within {SpecOptions.FormatDuration(timeout)} (it goes on; see `propeller task get {id}`)", TimedOut);
        }
    }
}
