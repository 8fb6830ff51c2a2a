using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
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
        var wait = PollLoopAsync(context, id, deadline.Token);
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
    /// runs once the stream is open (so a start it makes cannot be missed).
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
                context.Output.WriteLine($"+{clock.Elapsed.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)}s  {line}");
            }

            shown = line;
        }

        JsonElement Shown(JsonElement task)
        {
            Show(task);
            return task;
        }

        await using var events = context.Manager.EventsAsync("?task=" + Uri.EscapeDataString(id), cancellationToken).GetAsyncEnumerator(cancellationToken);
        var open = await events.MoveNextAsync();
        if (subscribed is not null)
        {
            await subscribed();
        }

        if (!open)
        {
            return Shown(await PollLoopAsync(context, id, cancellationToken)); // no stream (ended or broke at once): long polling misses nothing
        }

        var (task, version) = await CurrentAsync(context, id, cancellationToken);
        Show(task);
        while (!Tables.Ended(task))
        {
            if (!await events.MoveNextAsync())
            {
                return Shown(await PollLoopAsync(context, id, cancellationToken)); // the stream ended or broke: finish by long polling
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
                    }

                    break;
                case "resync" or "hello":
                    (task, version) = await CurrentAsync(context, id, cancellationToken);
                    break;
                default:
                    continue;
            }

            Show(task);
        }

        return task;
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

    private static async Task<JsonElement> PollLoopAsync(CliContext context, string id, CancellationToken cancellationToken)
    {
        var path = "/tasks/" + Uri.EscapeDataString(id) + "?wait=" + ((int)PollWait.TotalSeconds).ToString(CultureInfo.InvariantCulture) + "s";
        while (true)
        {
            var task = await context.Manager.GetAsync(path, PollWait, cancellationToken);
            // An answer without a state is no task (another server at the URL, answering at once): reading it throws,
            // the unexpected answer it is, instead of asking again without pause until --timeout.
            _ = task.GetProperty("state").GetInt32();
            if (Tables.Ended(task))
            {
                return task;
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
