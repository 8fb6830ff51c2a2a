using System.Globalization;
using System.Text.Json;
using FluentValidation;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Contracts;
using Propeller.Contracts.Json;
using Propeller.Contracts.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Serialization;
using Microsoft.OpenApi;
using Propeller.Manager.Http;
using Propeller.Manager.Plugins;
using Propeller.Manager.Wolverine;
using static Propeller.Domain.Tasks.TaskCommand;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Manager.Tasks;

/// <summary>The task routes of the original (spec §1.2 rows 1–8, 11) plus history and replay.</summary>
internal static class TaskEndpoints
{
    private const string InvalidId = "invalid query parameters";

    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan WaitRecheck = TimeSpan.FromMilliseconds(250);

    /// <summary>How long a wait that started from this node's cached state trusts it before reading the view.</summary>
    private static readonly TimeSpan FirstRecheck = TimeSpan.FromMilliseconds(50);

    public static IEndpointRouteBuilder MapTaskEndpoints(this IEndpointRouteBuilder app)
    {
        const string Id = "The task's id (a UUID).";
        app.MapPost("/tasks", CreateAsync).WithName("create-task")
            .WithSummary("Create a task")
            .WithDescription("Stores a task (a Wasm module inline as base64 in `file`, or an OCI `image_url`) in state 0 (pending). Validation and the plugins' authorize and enrich_task hooks run before it is stored; nothing is stored when either refuses.")
            .Body<TaskJson>("The task: name, and a module as file (base64) or image_url; the rest optional (inputs, cli_args, env, daemon, encrypted, schedule, priority, monitoring_profile, metadata ...).")
            .Produces<TaskJson>(StatusCodes.Status201Created)
            .Refuses(400, 403, 422, 501, 503);
        app.MapGet("/tasks", ListAsync).WithName("list-tasks")
            .WithSummary("List tasks")
            .WithDescription("One page of the task view, oldest first unless `order=newest`, with the total that matches the filters.")
            .Paged("1 to 100, default 100")
            .Query("metadata", "A JSON object: only tasks whose metadata contains it (jsonb containment).")
            .Query("state", "Only tasks in this state: its number (0-6) or name (pending, scheduled, running, completed, failed, skipped, interrupted).")
            .Query("name", "Only tasks whose name contains this text.")
            .Query("proplet_id", "Only tasks placed on this proplet.")
            .Query("order", "oldest (default) or newest.")
            .Produces<TaskPage>()
            .Refuses(400, 503);
        app.MapGet("/tasks/{taskId}", GetAsync).WithName("get-task")
            .WithSummary("Get a task")
            .WithDescription("The task as the view holds it; with `version` or `at`, as it was then (folded from its events); with `wait`, once its current attempt has ended or the wait runs out (long polling).")
            .Path("taskId", Id)
            .Query("version", "The task as it was at this version of its stream (1 is its creation).", JsonSchemaType.Integer)
            .Query("at", "The task as it was at this time (RFC 3339 with an offset, e.g. 2026-12-05T10:00:00Z).", format: "date-time")
            .Query("wait", "Wait up to this long (a Go duration up to 60s, e.g. 5s or 500ms) for the current attempt to end.")
            .Produces<TaskJson>()
            .Refuses(400, 404, 503);
        app.MapPut("/tasks/{taskId}", UpdateAsync).WithName("update-task")
            .WithSummary("Update a task")
            .WithDescription("Sets the fields the original's update applies (spec §2.6): name (when not empty), inputs (when present; null clears them), file (when present), priority (when not 0), metadata (when present), schedule with is_recurring and timezone (when present; \"\" clears it). Every other field (image_url, cli_args, env, daemon, encrypted, monitoring_profile, proplet_id, state ...) is ignored, as the original ignores it; the task keeps what is not set.")
            .Path("taskId", Id)
            .Body<TaskJson>("The fields to set.")
            .Produces<TaskJson>()
            .Refuses(400, 403, 404, 409, 422, 503);
        app.MapPut("/tasks/{taskId}/upload", UploadAsync).WithName("upload-task-file").DisableAntiforgery()
            .WithSummary("Upload a task's Wasm file")
            .WithDescription("A multipart/form-data body whose part `file` is named *.wasm and starts with \\0asm becomes the task's file.")
            .Path("taskId", Id)
            .FileBody("file", "The module as the part file, named *.wasm.")
            .Produces<TaskJson>()
            .Refuses(400, 403, 404, 409, 422, 503);
        app.MapDelete("/tasks/{taskId}", DeleteAsync).WithName("delete-task")
            .WithSummary("Delete a task")
            .WithDescription("Marks the task deleted (its history stays readable); an active task, or one whose run goes on, is refused with 409 (stop it first).")
            .Path("taskId", Id)
            .Produces(StatusCodes.Status204NoContent)
            .Refuses(400, 403, 404, 409, 422, 503);
        app.MapPost("/tasks/{taskId}/start", StartAsync).WithName("start-task")
            .WithSummary("Start a task")
            .WithDescription("Places the task on a proplet and sends it the start message (or queues it until one is available).")
            .Path("taskId", Id)
            .Produces<StartedJson>()
            .Refuses(400, 403, 404, 409, 422, 503);
        app.MapPost("/tasks/{taskId}/stop", StopAsync).WithName("stop-task")
            .WithSummary("Stop a task")
            .WithDescription("Sends the stop message to the task's proplet and records the task interrupted.")
            .Path("taskId", Id)
            .Produces<StoppedJson>()
            .Refuses(400, 403, 404, 409, 422, 503);
        app.MapGet("/tasks/{taskId}/results", ResultsAsync).WithName("get-task-results")
            .WithSummary("Get a task's results")
            .WithDescription("The results of the task's last run; an empty 200 when it has none.")
            .Path("taskId", Id)
            .Produces<TaskResultsJson>()
            .Refuses(400, 404, 503);
        app.MapGet("/tasks/{taskId}/history", HistoryAsync).WithName("get-task-history")
            .WithSummary("Get a task's history")
            .WithDescription("One page of the task's events in version order, with their metadata (correlation, causation, user, plugin decisions). The stream's version is in the Propeller-Stream-Version header, the pages before and after in Link.")
            .Path("taskId", Id)
            .Query("from", "The first version to return (default 1).", JsonSchemaType.Integer)
            .Query("limit", $"How many events (1 to {HistoryPageLimit}, default {HistoryPageLimit}).", JsonSchemaType.Integer)
            .Query("last", $"The last this many events (1 to {HistoryPageLimit}); not with from or limit.", JsonSchemaType.Integer)
            .Produces<List<TaskHistoryEntryJson>>()
            .Refuses(400, 404, 503);
        app.MapPost("/tasks/{taskId}/invoke", TaskInvocation.InvokeAsync).WithName("invoke-task")
            .WithSummary("Invoke a latent task")
            .WithDescription("Runs the latent task's function once on its proplet with the body's inputs and answers with the results; 500 with the proplet's error or when no answer comes within MANAGER_INVOKE_TIMEOUT (as the original).")
            .Path("taskId", Id)
            .Body<TaskInvocation.InvokeJson>("The invocation's inputs and environment (optional).", required: false)
            .Produces<InvokedJson>()
            .Refuses(400, 403, 404, 409, 422, 500, 503);
        return app;
    }

    /// <summary>POST /tasks: validation, the plugin gate and enrichment run as the Wolverine handler's middleware (ADR 0014).</summary>
    private static async Task<IResult> CreateAsync(
        HttpRequest request, WolverineTaskCommands commands, IValidator<TaskJson> validator, TimeProvider time, CancellationToken cancellationToken)
    {
        var (body, error) = await JsonBody.ReadAsync<TaskJson>(request, cancellationToken);
        if (error is not null)
        {
            return error;
        }

        // No workflow coordinator runs yet (docs/compatibility.md): a dependent stored here would wait for ever for a
        // start nothing sends, so it is refused (after the original's own checks of the body).
        if (body!.DependsOn is { Count: > 0 })
        {
            return Validate(validator, body) ?? UnbuiltEndpoints.NotImplemented("depends_on: workflows are not implemented yet");
        }

        // The spec is mapped before the handler's validation runs; JSON a string cannot hold (invalid UTF-8, a lone
        // surrogate) makes the mapping throw, and the validation says why (a 400 naming the field).
        TaskSpec spec;
        try
        {
            spec = TaskMapping.ToSpec(body);
        }
        catch (InvalidOperationException) when (Validate(validator, body) is { } refused)
        {
            return refused;
        }

        var created = new TaskId(Guid.CreateVersion7());
        return WolverineTaskCommands.Answer(
            await commands.SendAsync(new CreateTask(created, spec, time.GetUtcNow()), request, body, cancellationToken),
            state => Results.Created($"/tasks/{created}", TaskMapping.ToJson(state)));
    }

    private static async Task<IResult> ListAsync(HttpRequest request, ITaskQueries queries, CancellationToken cancellationToken)
    {
        if (!Paging.TryRead(request, out var offset, out var limit))
        {
            return ApiResults.BadRequest("invalid offset/limit");
        }

        if (limit is < 1 or > 100)
        {
            return ApiResults.BadRequest("invalid limit size");
        }

        string? filter = null;
        var metadata = request.Query["metadata"];
        if (metadata.Count > 1)
        {
            return ApiResults.BadRequest("metadata given more than once");
        }

        if (metadata.Count == 1)
        {
            try
            {
                using var document = JsonDocument.Parse(metadata[0]!);
                if (document.RootElement.ValueKind != JsonValueKind.Object && document.RootElement.ValueKind != JsonValueKind.Null)
                {
                    return ApiResults.BadRequest("metadata must be a JSON object");
                }

                // What jsonb cannot take (a \u0000, a number beyond its range): the filter's cast failed only when a row
                // reached it, so the answer (400 or an empty 200) hung on the plan and the table's contents.
                if (StorableText.Problem(document.RootElement) is { } problem)
                {
                    return ApiResults.BadRequest($"metadata {problem}");
                }

                // {} and null filter nothing, as the original (a filter per key; Go reads null as no map): containment
                // of {} left out every task without metadata.
                filter = document.RootElement.ValueKind == JsonValueKind.Null || !document.RootElement.EnumerateObject().Any() ? null : document.RootElement.GetRawText();
            }
            catch (JsonException)
            {
                return ApiResults.BadRequest("metadata must be a JSON object");
            }
        }

        // Beyond the original: state (its number or name), a part of the name, the proplet and newest-first order.
        TaskStatus? status = null;
        if (request.Query["state"].FirstOrDefault() is { Length: > 0 } state)
        {
            // One state: Enum.TryParse would OR a comma list ("scheduled,running" = 3, completed) together.
            if (!state.All(char.IsAsciiLetterOrDigit) || !Enum.TryParse<TaskStatus>(state, ignoreCase: true, out var parsed) || !Enum.IsDefined(parsed))
            {
                return ApiResults.BadRequest("state must be a task state: 0-6 or pending, scheduled, running, completed, failed, skipped, interrupted");
            }

            status = parsed;
        }

        var order = request.Query["order"].FirstOrDefault();
        if (order is not (null or "" or "oldest" or "newest"))
        {
            return ApiResults.BadRequest("order must be oldest or newest");
        }

        var (name, propletId) = (request.Query["name"].FirstOrDefault(), request.Query["proplet_id"].FirstOrDefault());
        if (StorableText.HoldsNul(name) || StorableText.HoldsNul(propletId))
        {
            return ApiResults.BadRequest("name and proplet_id must not contain \\u0000");
        }

        var listFilter = new TaskListFilter(filter, status, name, propletId, order == "newest");
        var page = await queries.ListAsync((long)offset, (int)limit, listFilter, cancellationToken);
        return Results.Ok(new TaskPage((long)offset, (long)limit, page.Total, [.. page.Tasks.Select(TaskMapping.ToJson)]));
    }

    private static async Task<IResult> GetAsync(
        string taskId, HttpRequest request, ITaskQueries queries, AggregateLoader loader, StreamChanges changes, AggregateCache cache, IHostApplicationLifetime lifetime,
        CancellationToken cancellationToken)
    {
        if (!TryTaskId(taskId, out var id))
        {
            return ApiResults.BadRequest(InvalidId);
        }

        var version = request.Query["version"].FirstOrDefault();
        var at = request.Query["at"].FirstOrDefault();
        var wait = request.Query["wait"].FirstOrDefault();
        if (wait is not null)
        {
            if (version is not null || at is not null)
            {
                return ApiResults.BadRequest("wait cannot be combined with version or at");
            }

            if (!GoDuration.TryParse(wait, out var timeout) || timeout > MaxWait)
            {
                return ApiResults.BadRequest("wait must be a duration up to 60s (e.g. 5s or 500ms)");
            }

            return await WaitForEndAsync(id, timeout, queries, changes, cache, lifetime.ApplicationStopping, cancellationToken) is { } waited
                ? Results.Ok(TaskMapping.ToJson(waited))
                : ApiResults.NotFound("task not found");
        }

        if (version is null && at is null)
        {
            return await queries.GetAsync(id, cancellationToken) is { } state ? Results.Ok(TaskMapping.ToJson(state)) : ApiResults.NotFound("task not found");
        }

        // Replay: the state as it was at a version or a point in time, folded from the stream.
        if (version is not null && at is not null)
        {
            return ApiResults.BadRequest("version and at cannot be combined");
        }

        StreamReadOptions options;
        if (version is not null)
        {
            if (!long.TryParse(version, NumberStyles.None, CultureInfo.InvariantCulture, out var v) || v < 1)
            {
                return ApiResults.BadRequest("version must be a positive integer");
            }

            // At the stream's current version the view is that state already (the inline projection folds the same events).
            if (await queries.GetAtVersionAsync(id, v, cancellationToken) is { } current)
            {
                return Replayed(current);
            }

            options = new StreamReadOptions(ToVersion: v);
        }
        else if (Rfc3339.TryParse(PlusOffset(at!), out var time))
        {
            options = new StreamReadOptions(Until: time);
        }
        else
        {
            return ApiResults.BadRequest("at must be an RFC 3339 time, such as 2026-12-05T10:00:00Z or 2026-12-05T11:00:00.5+01:00");
        }

        var replayed = await loader.LoadAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), options with { IncludeArchived = true }, cancellationToken);
        // By the version asked for, not the read's bound: long.MaxValue also means "no bound" to the loader (it read the
        // whole stream and answered its current state as version 9223372036854775807).
        if (version is not null && replayed.State is { Exists: true, Deleted: false } && replayed.Version < options.ToVersion)
        {
            // Past the stream's end: answered as the current state before, as if it were that version.
            return ApiResults.NotFound($"task has no version {options.ToVersion} (its latest is {replayed.Version})");
        }

        return Replayed(replayed.State);

        // A query string's "+" reads as a space: "...11:00:00.5+01:00" unencoded arrives as "...11:00:00.5 01:00" (the
        // offset of the example this route's 400 gives was refused).
        static string PlusOffset(string text) =>
            text.Length > 6 && text[^6] == ' ' && char.IsAsciiDigit(text[^5]) && char.IsAsciiDigit(text[^4]) && text[^3] == ':' ? string.Concat(text.AsSpan(0, text.Length - 6), "+", text.AsSpan(text.Length - 5)) : text;

        // A task deleted by then is gone at that point, as GET says of it now (its last state is its history's to show).
        static IResult Replayed(TaskState state) => state switch
        {
            { Exists: false } => ApiResults.NotFound("task not found at that point"),
            { Deleted: true } => ApiResults.NotFound("task was deleted at that point"),
            _ => Results.Ok(TaskMapping.ToJson(state)),
        };
    }

    /// <summary>
    /// Long polling (beyond the original): the task once its current attempt has ended (completed, failed, skipped or
    /// interrupted), or as it is when <paramref name="timeout"/> runs out. Woken by this node's appends; re-reads every
    /// <see cref="WaitRecheck"/> for changes made by other nodes. When this node appended the task's latest state it
    /// knows (the command cache: committed states only) and it has not ended, the wait starts from it instead of a first
    /// read of the view, which is read after <see cref="FirstRecheck"/> (in case another node moved the task since); an
    /// ended state is never answered from the cache (another node may have started a new attempt). When the host begins to
    /// stop, the task is answered as it is (<paramref name="stopping"/>): a wait held Kestrel's graceful shutdown for up
    /// to a minute, and the hosted services after it stopped with a cancelled token.
    /// </summary>
    private static async Task<TaskState?> WaitForEndAsync(
        TaskId id, TimeSpan timeout, ITaskQueries queries, StreamChanges changes, AggregateCache cache, CancellationToken stopping, CancellationToken cancellationToken)
    {
        var stream = TaskAggregate.StreamId(id);
        using var watch = changes.Start(stream);
        using var waiting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, stopping);
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        // An ended state from the cache is confirmed by the view: another node may have started the task again since.
        var fromCache = cache.TryGet<TaskState>(stream, out var cached) && cached.State.Exists && !Ended(cached.State);
        var state = fromCache ? cached.State : await queries.GetAsync(id, cancellationToken);
        while (true)
        {
            var left = deadline - Environment.TickCount64;
            if (state is null || Ended(state) || left <= 0 || stopping.IsCancellationRequested)
            {
                return state is { Deleted: true } ? null : state;
            }

            // The appender hands over the state it committed (the inline projection wrote the same in that transaction);
            // without one, or after the re-check interval (another node may have appended), read the view again.
            var recheck = fromCache ? FirstRecheck : WaitRecheck;
            fromCache = false;
            bool changed;
            object? appended;
            try
            {
                (changed, appended) = await watch.NextAsync(TimeSpan.FromMilliseconds(Math.Min(left, recheck.TotalMilliseconds)), waiting.Token);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                continue; // answered as it is, above
            }

            state = changed && appended is TaskState known ? known : await queries.GetAsync(id, cancellationToken);
        }

        static bool Ended(TaskState state) => state.Status is not (TaskStatus.Pending or TaskStatus.Scheduled or TaskStatus.Running) || state.Deleted;
    }

    private static async Task<IResult> UpdateAsync(string taskId, HttpRequest request, WolverineTaskCommands commands, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!TryTaskId(taskId, out var id))
        {
            return ApiResults.BadRequest(InvalidId);
        }

        var (body, error) = await JsonBody.ReadAsync<TaskJson>(request, cancellationToken);
        if (error is not null)
        {
            return error;
        }

        return Validate(TaskUpdateValidator.Instance, body!) ?? await UpdateWithAsync(id, TaskMapping.ToPatch(body!), request, commands, time, cancellationToken);
    }

    /// <summary>An update (PUT, upload): the decider applies the patch to the task's spec as it is then (404 when none).</summary>
    private static async Task<IResult> UpdateWithAsync(
        TaskId id, TaskSpecPatch patch, HttpRequest request, WolverineTaskCommands commands, TimeProvider time, CancellationToken cancellationToken) =>
        WolverineTaskCommands.Answer(await commands.SendAsync(new UpdateTask(id, patch, time.GetUtcNow()), request, null, cancellationToken), state => Results.Ok(TaskMapping.ToJson(state)));

    /// <summary>
    /// PUT /tasks/{id}/upload: a multipart part <c>file</c> named *.wasm whose content starts with <c>\0asm</c> becomes
    /// the task's file (spec §2.6). Unlike the original, a missing part or a broken body is a 400, and the upload
    /// leaves a cron schedule alone.
    /// </summary>
    private static async Task<IResult> UploadAsync(string taskId, HttpRequest request, WolverineTaskCommands commands, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!TryTaskId(taskId, out var id))
        {
            return ApiResults.BadRequest(InvalidId);
        }

        if (!request.HasFormContentType)
        {
            return ApiResults.BadRequest("expected multipart/form-data with a part named file");
        }

        IFormFile? file;
        try
        {
            file = (await request.ReadFormAsync(cancellationToken)).Files.GetFile("file");
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or BadHttpRequestException)
        {
            return ApiResults.BadRequest($"invalid multipart body: {ex.Message}");
        }

        if (file is null)
        {
            return ApiResults.BadRequest("the multipart body has no part named file");
        }

        if (!file.FileName.EndsWith(".wasm", StringComparison.OrdinalIgnoreCase))
        {
            return ApiResults.BadRequest("file name must end with .wasm");
        }

        byte[] bytes;
        await using (var stream = file.OpenReadStream())
        using (var buffer = new MemoryStream())
        {
            await stream.CopyToAsync(buffer, cancellationToken);
            bytes = buffer.ToArray();
        }

        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != (byte)'a' || bytes[2] != (byte)'s' || bytes[3] != (byte)'m')
        {
            return ApiResults.BadRequest("file is not a WebAssembly module (it must start with \\0asm)");
        }

        return await UpdateWithAsync(id, new TaskSpecPatch { SetsFile = true, File = Convert.ToBase64String(bytes) }, request, commands, time, cancellationToken);
    }

    private static Task<IResult> DeleteAsync(string taskId, HttpRequest request, WolverineTaskCommands commands, TimeProvider time, CancellationToken cancellationToken) =>
        SendAsync(taskId, request, commands, id => new DeleteTask(id, time.GetUtcNow()), _ => Results.NoContent(), cancellationToken);

    /// <summary>
    /// Starts a task: when the scheduler can place it at once (no plugins take part), the start, the dispatch and the
    /// start message are one handler's transaction, the message cascaded into Wolverine's outbox (ADR 0014); the plugin
    /// gate and on_task_start are the handler's middleware; otherwise the started task goes to the scheduler.
    /// </summary>
    private static async Task<IResult> StartAsync(
        string taskId, HttpRequest request, WolverineTaskCommands commands, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!TryTaskId(taskId, out var id))
        {
            return ApiResults.BadRequest(InvalidId);
        }

        // Placement is the handler's (dispatched or deferred in the start's transaction, or a cascaded PlaceTasks).
        var outcome = await commands.SendAsync(new StartTask(id, time.GetUtcNow(), TaskPlugins.UserOf(request)), request, null, cancellationToken);
        return WolverineTaskCommands.Answer(outcome, _ => Results.Ok(new StartedJson(true)));
    }

    /// <summary>Stops a task: TaskStopped and the original's stop message (cascaded into Wolverine's outbox) in one transaction.</summary>
    private static Task<IResult> StopAsync(string taskId, HttpRequest request, WolverineTaskCommands commands, TimeProvider time, CancellationToken cancellationToken) =>
        SendAsync(taskId, request, commands, id => new StopTask(id, "stopped by user", time.GetUtcNow()), _ => Results.Ok(new StoppedJson(true)), cancellationToken);

    private static async Task<IResult> ResultsAsync(string taskId, ITaskQueries queries, CancellationToken cancellationToken)
    {
        if (!TryTaskId(taskId, out var id))
        {
            return ApiResults.BadRequest(InvalidId);
        }

        var state = await queries.GetAsync(id, cancellationToken);
        if (state is null)
        {
            return ApiResults.NotFound("task not found");
        }

        // The original answers 200 with an empty body when there are no results.
        return TaskMapping.Parse(state.Results) is { } results ? Results.Ok(new TaskResultsJson(results)) : Results.Ok();
    }

    /// <summary>The most events one history page holds (and the page's size when none is asked for).</summary>
    internal const int HistoryPageLimit = 1000;

    /// <summary>
    /// GET /tasks/{id}/history: one page of the task's events in version order, <c>?from=N</c> (default 1) and
    /// <c>?limit=M</c> (1–1000, default 1000), or its last M events (<c>?last=M</c>). A recurring task gains events with
    /// every run, so the history is never read whole: the stream's version is in <c>Propeller-Stream-Version</c>, and
    /// the pages before and after this one in <c>Link</c> (rel prev and next).
    /// </summary>
    private static async Task<IResult> HistoryAsync(
        string taskId, string? from, string? limit, string? last, HttpRequest request, HttpResponse response, IEventStore store, EventSerializer serializer, CancellationToken cancellationToken)
    {
        if (!TryTaskId(taskId, out var id))
        {
            return ApiResults.BadRequest(InvalidId);
        }

        if (!TryPositive(from, 1, long.MaxValue, out var first) || !TryPositive(limit, HistoryPageLimit, HistoryPageLimit, out var size)
            || !TryPositive(last, 0, HistoryPageLimit, out var tail))
        {
            return ApiResults.BadRequest($"from must be a positive integer, limit and last integers from 1 to {HistoryPageLimit}");
        }

        if (last is not null && (from is not null || limit is not null))
        {
            return ApiResults.BadRequest("last cannot be combined with from or limit");
        }

        var streamId = TaskAggregate.StreamId(id);
        if (tail > 0)
        {
            // The stream's version first (no event read: none is past it), then its last events up to that version: a page of exactly
            // that many however many events commit in between.
            var head = await store.ReadStreamAsync(streamId, new StreamReadOptions(FromVersion: long.MaxValue, IncludeArchived: true), cancellationToken);
            if (head is null)
            {
                return ApiResults.NotFound("task not found");
            }

            (first, size) = (Math.Max(1, head.Version - tail + 1), tail);
        }

        var to = first > long.MaxValue - size ? long.MaxValue : first + size - 1;
        var stream = await store.ReadStreamAsync(streamId, new StreamReadOptions(FromVersion: first, ToVersion: to, IncludeArchived: true), cancellationToken);
        if (stream is null)
        {
            return ApiResults.NotFound("task not found");
        }

        // The stream's state and its events are two reads: events committed between them may end past the state's version.
        var version = Math.Max(stream.Version, stream.Events.Count > 0 ? stream.Events[^1].Version : 0);
        var links = new List<string>(2);
        if (first > 1 && version > 0)
        {
            // The page ending just before this one; past the end, the stream's last page.
            var end = Math.Min(first - 1, version);
            var previous = Math.Max(1, end - size + 1);
            links.Add(HistoryLink(request, taskId, previous, end - previous + 1, "prev"));
        }

        if (to < version)
        {
            links.Add(HistoryLink(request, taskId, to + 1, size, "next"));
        }

        response.Headers[StreamVersionHeader] = version.ToString(CultureInfo.InvariantCulture);
        if (links.Count > 0)
        {
            response.Headers.Link = string.Join(", ", links);
        }

        // The module is redacted as GET /tasks/{id} redacts it: a history holds it in every create and update otherwise.
        static object Redacted(object data) => data switch
        {
            TaskEvent.TaskCreated c => c with { Spec = c.Spec with { File = TaskMapping.Redact(c.Spec.File) } },
            TaskEvent.TaskUpdated u => u with { Spec = u.Spec with { File = TaskMapping.Redact(u.Spec.File) } },
            _ => data,
        };

        return Results.Ok(stream.Events.Select(e => new TaskHistoryEntryJson(
            e.Version, e.Type, e.Metadata.Timestamp, JsonSerializer.Deserialize<JsonElement>(serializer.Serialize(Redacted(e.Data)).Json),
            e.Metadata.CorrelationId, e.Metadata.CausationId, e.Metadata.UserId, e.Metadata.Headers)).ToList());
    }

    /// <summary>The response header of GET /tasks/{id}/history holding the stream's version when it was read.</summary>
    internal const string StreamVersionHeader = "Propeller-Stream-Version";

    private static string HistoryLink(HttpRequest request, string taskId, long from, long limit, string relation) =>
        string.Create(CultureInfo.InvariantCulture, $"<{request.PathBase}/tasks/{Uri.EscapeDataString(taskId)}/history?from={from}&limit={limit}>; rel=\"{relation}\"");

    /// <summary>An optional positive integer query value no larger than <paramref name="max"/>.</summary>
    private static bool TryPositive(string? raw, long fallback, long max, out long value)
    {
        if (raw is null)
        {
            value = fallback;
            return true;
        }

        return long.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= 1 && value <= max;
    }

    private static async Task<IResult> SendAsync(
        string taskId, HttpRequest request, WolverineTaskCommands commands, Func<TaskId, TaskCommand> command, Func<TaskState, IResult> ok, CancellationToken cancellationToken) =>
        TryTaskId(taskId, out var id)
            ? WolverineTaskCommands.Answer(await commands.SendAsync(command(id), request, null, cancellationToken), ok)
            : ApiResults.BadRequest(InvalidId);

    private static IResult? Validate(IValidator<TaskJson> validator, TaskJson body)
    {
        var validation = validator.Validate(body);
        return validation.IsValid ? null : ApiResults.BadRequest(string.Join('\n', validation.Errors.Select(e => e.ErrorMessage)));
    }

    internal static bool TryTaskId(string value, out TaskId id)
    {
        var ok = Guid.TryParse(value, out var guid);
        id = new TaskId(guid);
        return ok;
    }
}
