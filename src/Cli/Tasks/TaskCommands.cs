using System.CommandLine;
using System.CommandLine.Parsing;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Propeller.Cli.Output;

namespace Propeller.Cli.Tasks;

/// <summary><c>propeller task ...</c>: create, list, get, start, stop, delete, history, watch and run.</summary>
internal static class TaskCommands
{
    public static Command Build(CommandActions actions)
    {
        var task = new Command("task", "Create, run, inspect and control tasks");
        task.Subcommands.Add(Create(actions));
        task.Subcommands.Add(List(actions));
        task.Subcommands.Add(Get(actions));
        task.Subcommands.Add(Simple(actions, "start", "Start a task (it is placed on a proplet)", id => $"/tasks/{id}/start", "started"));
        task.Subcommands.Add(Simple(actions, "stop", "Stop a running task", id => $"/tasks/{id}/stop", "stopped"));
        task.Subcommands.Add(Delete(actions));
        task.Subcommands.Add(History(actions));
        task.Subcommands.Add(Watch(actions));
        task.Subcommands.Add(Run(actions));
        return task;
    }

    /// <summary>
    /// A task id is a GUID (the manager's ids; anything else is its 400 or 404): checked before any request, as "." and
    /// ".." were resolved away as path segments (<c>task get .</c> asked for <c>/tasks/</c>, the list, shown as a task).
    /// </summary>
    private static Argument<string> IdArgument() => new("id") { Description = "The task's id", Validators = { RefuseEmpty("the task id"), RefuseNonGuid } };

    private static void RefuseNonGuid(SymbolResult result)
    {
        if (result.Tokens.Count > 0 && result.Tokens[0].Value is { Length: > 0 } value && !Guid.TryParse(value, out _))
        {
            result.AddError($"the task id must be a task's id, such as 0193a5b0-7c2e-7000-8000-000000000001 (got '{value}')");
        }
    }

    /// <summary>
    /// Refuses an empty value (<c>""</c>, an unset shell variable) of an argument or option. An empty id asked for
    /// <c>/tasks/</c>, the task list, which <c>task get</c> showed as if it were a task (the other commands got a 404 or
    /// 405 for a path nobody typed); an empty FILE.wasm is not reported by the parser as a file it cannot make, and the
    /// action failed; an empty --image-url counted as the module's source.
    /// </summary>
    internal static Action<SymbolResult> RefuseEmpty(string what) => result =>
    {
        if (result.Tokens.Count > 0 && result.Tokens[0].Value.Length == 0)
        {
            result.AddError($"{what} must not be empty");
        }
    };

    private static Command Create(CommandActions actions)
    {
        var name = new Option<string>("--name", "-n") { Description = "The task's name: the function to call (main, _start for WASI programs)", Required = true };
        var spec = new SpecOptions();
        var command = new Command("create", "Create a task (from a .wasm file or an OCI image URL); it stays pending until started") { name };
        spec.AddTo(command);
        actions.Set(
            command,
            (context, parse, cancellationToken) => context.Manager.PostAsync("/tasks", spec.Body(parse, parse.GetValue(name)!), cancellationToken),
            (context, created) => context.Console.Write(TaskFields.Detail(created)));
        return command;
    }

    private static Command List(CommandActions actions)
    {
        var offset = Paging.Offset("tasks");
        var limit = Paging.Limit("tasks", 20, max: 100);
        var state = new Option<string?>("--state", "-s") { Description = "Only tasks in this state" };
        state.AcceptOnlyFromAmong("pending", "scheduled", "running", "completed", "failed", "skipped", "interrupted");
        var name = new Option<string?>("--name", "-n") { Description = "Only tasks whose name contains this (any case)" };
        var metadata = new Option<string?>("--metadata") { Description = "Only tasks whose metadata contains this JSON object, e.g. '{\"team\":\"edge\"}'" };
        metadata.Validators.Add(result =>
        {
            // Checked as task create checks it (exit 2), not left to the manager's 400 (exit 1).
            if (result.Tokens.Count > 0 && SpecOptions.MetadataError(result.Tokens[0].Value) is { } error)
            {
                result.AddError(error);
            }
        });
        var proplet = new Option<string?>("--proplet") { Description = "Only tasks dispatched to this proplet" };
        var newest = new Option<bool>("--newest") { Description = "Newest first (default: oldest first)" };
        var command = new Command("list", "List tasks, a page at a time") { offset, limit, state, name, metadata, proplet, newest };
        actions.Set(
            command,
            (context, parse, cancellationToken) =>
            {
                var query = new List<string>
                {
                    "offset=" + parse.GetValue(offset).ToString(CultureInfo.InvariantCulture),
                    "limit=" + parse.GetValue(limit).ToString(CultureInfo.InvariantCulture),
                };
                void Add(string key, string? value)
                {
                    if (value is { Length: > 0 })
                    {
                        query.Add(key + "=" + Uri.EscapeDataString(value));
                    }
                }

                Add("state", parse.GetValue(state));
                Add("name", parse.GetValue(name));
                Add("metadata", parse.GetValue(metadata));
                Add("proplet_id", parse.GetValue(proplet));
                Add("order", parse.GetValue(newest) ? "newest" : null);
                return context.Manager.GetAsync("/tasks?" + string.Join('&', query), cancellationToken);
            },
            (context, page) =>
            {
                // Everything read before anything is printed: an answer of another shape prints no part of a table.
                var tasks = page.GetProperty("tasks").EnumerateArray().ToList();
                var from = page.GetProperty("offset").GetInt64();
                var total = page.GetProperty("total").GetInt64();
                var table = TaskFields.List(tasks, DateTimeOffset.UtcNow);
                context.Console.Write(table);
                context.Output.WriteLine(tasks.Count == 0 ? $"no tasks ({total} in all)" : $"{from + 1}-{from + tasks.Count} of {total}");
            });
        return command;
    }

    private static Command Get(CommandActions actions)
    {
        var id = IdArgument();
        var version = new Option<long?>("--version")
        {
            Description = "The task as it was at this version of its history (replay; 1 or more)",
            CustomParser = result => Paging.ParseWhole(result, "--version", 1L, null),
        };
        var at = new Option<string?>("--at") { Description = "The task as it was at this time (RFC 3339; replay)" };
        var command = new Command("get", "Show a task, now or as it was at a version or time") { id, version, at };
        command.Validators.Add(result =>
        {
            if (result.GetResult(version) is { Implicit: false } && result.GetResult(at) is { Implicit: false })
            {
                result.AddError("--version and --at cannot be used together: the task is shown at one of them");
            }
        });
        actions.Set(
            command,
            (context, parse, cancellationToken) =>
            {
                var query = parse.GetValue(version) is { } v ? "?version=" + v.ToString(CultureInfo.InvariantCulture)
                    : parse.GetValue(at) is { } time ? "?at=" + Uri.EscapeDataString(time)
                    : "";
                return context.Manager.GetAsync($"/tasks/{Escape(parse.GetValue(id)!)}{query}", cancellationToken);
            },
            (context, task) => context.Console.Write(TaskFields.Detail(task)));
        return command;
    }

    private static Command Simple(CommandActions actions, string name, string description, Func<string, string> path, string done)
    {
        var id = IdArgument();
        var command = new Command(name, description) { id };
        actions.Set(command, async (context, parse, cancellationToken) =>
        {
            var answer = await context.Manager.PostAsync(path(Escape(parse.GetValue(id)!)), null, cancellationToken);
            if (context.Json)
            {
                context.WriteJson(answer);
            }
            else
            {
                await context.Output.WriteLineAsync($"{done} {parse.GetValue(id)}");
            }

            return 0;
        });
        return command;
    }

    private static Command Delete(CommandActions actions)
    {
        var id = IdArgument();
        var command = new Command("delete", "Delete a task (not while it runs: stop it first)") { id };
        actions.Set(command, async (context, parse, cancellationToken) =>
        {
            await context.Manager.DeleteAsync($"/tasks/{Escape(parse.GetValue(id)!)}", cancellationToken);
            if (context.Json)
            {
                context.WriteJson(new { deleted = true });
            }
            else
            {
                await context.Output.WriteLineAsync($"deleted {parse.GetValue(id)}");
            }

            return 0;
        });
        return command;
    }

    private static Command History(CommandActions actions)
    {
        var id = IdArgument();
        var last = new Option<int?>("--last")
        {
            Description = $"Only the last N events (1-{HistoryPage})",
            CustomParser = result => Paging.ParseWhole(result, "--last", 1, HistoryPage),
        };
        var command = new Command("history", "Show a task's history: every event with its time, user and plugin decisions") { id, last };
        actions.Set(
            command,
            (context, parse, cancellationToken) => parse.GetValue(last) is { } n
                ? context.Manager.GetAsync($"/tasks/{Escape(parse.GetValue(id)!)}/history?last={n.ToString(CultureInfo.InvariantCulture)}", cancellationToken)
                : AllHistoryAsync(context, parse.GetValue(id)!, cancellationToken),
            (context, history) =>
            {
                var table = Tables.Create("VERSION", "TIME", "EVENT", "USER", "PLUGINS");
                foreach (var entry in history.EnumerateArray())
                {
                    Tables.Row(table, Tables.Str(entry, "version"), Tables.Stamp(Tables.Time(entry, "timestamp")), Tables.Str(entry, "type"), Tables.Str(entry, "user_id"), PluginDecisions(entry));
                }

                context.Console.Write(table);
            });
        return command;
    }

    /// <summary>The most events the manager returns in one page of a history.</summary>
    private const int HistoryPage = 1000;

    /// <summary>The whole history, a page at a time (the manager answers at most <see cref="HistoryPage"/> events a call).</summary>
    private static async Task<JsonElement> AllHistoryAsync(CliContext context, string id, CancellationToken cancellationToken)
    {
        var events = new List<JsonElement>();
        for (var from = 1L; ; from += HistoryPage)
        {
            var page = await context.Manager.GetAsync(
                $"/tasks/{Escape(id)}/history?from={from.ToString(CultureInfo.InvariantCulture)}&limit={HistoryPage.ToString(CultureInfo.InvariantCulture)}", cancellationToken);
            // A page that does not start at the version asked for comes from a manager that does not page its histories
            // (before 2026-12-05): it answers the whole history, every time.
            if (page.GetArrayLength() > HistoryPage
                || (page.GetArrayLength() > 0 && !(page[0].TryGetProperty("version", out var first) && first.TryGetInt64(out var version) && version == from)))
            {
                return page;
            }

            events.AddRange(page.EnumerateArray());
            if (page.GetArrayLength() < HistoryPage)
            {
                return JsonSerializer.SerializeToElement(events);
            }
        }
    }

    /// <summary>The plugin decisions in an event's headers, e.g. <c>audit: authorize create allow</c>.</summary>
    internal static string PluginDecisions(JsonElement entry)
    {
        if (!entry.TryGetProperty("headers", out var headers) || headers.ValueKind != JsonValueKind.Object || !headers.TryGetProperty("plugins", out var plugins))
        {
            return "";
        }

        try
        {
            using var decisions = JsonDocument.Parse(plugins.GetString() ?? "[]");
            return string.Join("; ", decisions.RootElement.EnumerateArray().Select(d =>
                $"{Tables.Str(d, "plugin")}: {Tables.Str(d, "hook")} {(d.TryGetProperty("allow", out var allow) && allow.GetBoolean() ? "allow" : "deny")}"
                + (Tables.Str(d, "reason") is { Length: > 0 } reason ? $" ({reason})" : "")));
        }
        catch (JsonException)
        {
            return plugins.ToString();
        }
    }

    private static Command Watch(CommandActions actions)
    {
        var id = IdArgument();
        var timeout = TimeoutOption();
        var command = new Command("watch", "Follow a task's state live until its attempt ends; the exit code tells how it ended") { id, timeout };
        actions.Set(command, async (context, parse, cancellationToken) =>
        {
            var task = await TaskWaiter.WatchAsync(context, parse.GetValue(id)!, Stopwatch.StartNew(), parse.GetValue(timeout), null, cancellationToken);
            return Finish(context, task);
        });
        return command;
    }

    private static Command Run(CommandActions actions)
    {
        var file = new Argument<FileInfo?>("file") { Description = "The WebAssembly module (.wasm) to run, unless --image-url is given", Arity = ArgumentArity.ZeroOrOne };
        file.Validators.Add(RefuseEmpty("FILE.wasm"));
        var function = new Option<string>("--function", "-f") { Description = "The function to call (_start for WASI programs); a module that does not export it runs its main, run or _start instead (the first it has), with no error (docs/edge.md)", DefaultValueFactory = _ => "main" };
        var watch = new Option<bool>("--watch", "-w") { Description = "Print every state the task reaches (scheduled, running on which proplet, ...)" };
        var timeout = TimeoutOption();
        var spec = new SpecOptions(withFile: false);
        var command = new Command("run", "Create a task from a .wasm file or an image URL, start it and wait for its result (exit code 0 when it completed)") { file, function, watch, timeout };
        spec.AddTo(command);
        command.Validators.Add(result =>
        {
            // Exactly one source: with both, the proplet would run the file and never ask for the image.
            // Whether each was given, from the results: GetValue of a file the parser could not make ("") throws here.
            var (hasFile, hasImage) = (result.GetResult(file) is { Tokens.Count: > 0 }, result.GetResult(spec.ImageUrl) is not null);
            if (hasFile == hasImage)
            {
                result.AddError(hasFile ? "FILE.wasm and --image-url cannot be used together: the module comes from one of them" : "task run needs FILE.wasm or --image-url URL");
            }
        });
        actions.Set(command, async (context, parse, cancellationToken) =>
        {
            var clock = Stopwatch.StartNew();
            var body = spec.Body(parse, parse.GetValue(function)!) with { File = parse.GetValue(file) is { } module ? SpecOptions.ReadWasm(module) : null };
            var created = await context.Manager.PostAsync("/tasks", body, cancellationToken);
            var id = created.GetProperty("id").GetString()!;
            Task StartAsync() => context.Manager.PostAsync($"/tasks/{id}/start", null, cancellationToken);
            JsonElement task;
            if (parse.GetValue(watch))
            {
                if (!context.Json)
                {
                    await context.Output.WriteLineAsync($"task {Printable.Line(id)}");
                }

                task = await TaskWaiter.WatchAsync(context, id, clock, parse.GetValue(timeout), StartAsync, cancellationToken);
            }
            else
            {
                await StartAsync();
                task = await TaskWaiter.PollAsync(context, id, $"task {id} running", clock, parse.GetValue(timeout), cancellationToken);
            }

            return Finish(context, task, clock);
        });
        return command;
    }

    /// <summary>Prints how the attempt ended (the result on stdout, alone) and returns the exit code: 0 only when it completed.</summary>
    private static int Finish(CliContext context, JsonElement task, Stopwatch? clock = null)
    {
        var state = Tables.StateName(task);
        var completed = state == "completed";
        if (context.Json)
        {
            context.WriteJson(task);
        }
        else if (completed)
        {
            context.Output.WriteLine(Tables.Results(task));
        }

        var took = clock is null ? "" : $" in {clock.Elapsed.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)}s";
        var where = Tables.Str(task, "proplet_id") is { Length: > 0 } proplet ? $" on proplet {proplet}" : "";
        // Made printable: the proplet's id is an edge device's, the error a guest's or a plugin's text.
        context.Error.WriteLine(Printable.Line(completed
            ? $"task {Tables.Str(task, "id")} completed{where}{took}"
            : $"propeller: task {Tables.Str(task, "id")} {state}{where}{took}" + (Tables.Str(task, "error") is { Length: > 0 } error ? $": {error}" : "")));
        return completed ? 0 : 1;
    }

    private static Option<TimeSpan> TimeoutOption() => new("--timeout")
    {
        Description = "Give up waiting after this long (e.g. 30s, 5m; the task goes on); exit code 4",
        DefaultValueFactory = _ => TimeSpan.FromMinutes(10),
        CustomParser = result => SpecOptions.ParseDuration(result),
    };

    private static string Escape(string id) => Uri.EscapeDataString(id);
}
