using Marten;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Tasks;
using Propeller.Contracts;
using Propeller.Infrastructure.MartenStore;
using Propeller.Manager.Configuration;

namespace Propeller.Manager.Operations;

/// <summary>
/// `propeller-manager rebuild &lt;projection&gt;|all [--force] [--timeout &lt;duration&gt;]`: rebuilds a Marten projection (or
/// every one) from the events (with the manager's settings), logging progress. Marten's rebuild first deletes the
/// projection's documents: a manager running meanwhile would decide its commands on tasks it cannot find (a result lost
/// as "task not found"), so the command refuses while managers hold connections on the schema (pg_stat_activity, by the
/// name their connections carry), unless --force, and even then for the views commands decide on (<see cref="Decided"/>);
/// it holds the schema's lock (<see cref="SchemaLock"/>) throughout, so a manager starting meanwhile waits for it. Exit
/// codes: 0 done, 2 usage, settings or managers running, 1 failure (PostgreSQL, the schema, the timeout) or interrupted.
/// </summary>
internal static class RebuildCommand
{
    /// <summary>
    /// How long one projection's replay may take (Marten's shard timeout: the whole replay to the high-water mark, not a
    /// page): Marten's own default (5 min) and our former 30 min cut a large store's rebuild short.
    /// </summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromHours(24);

    /// <summary>The longest --timeout: Marten takes the timeout as whole milliseconds in an int (about 24.8 days).</summary>
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromMilliseconds(int.MaxValue);

    /// <summary>
    /// The inline views commands decide on, refused even with --force while managers run: the teardown deletes their
    /// documents under the running managers (a proplet's result refused as "task not found"; a heartbeat of a live
    /// proplet registering it again under a new name and registration, its liveness started afresh), and an event a
    /// manager appends meanwhile writes its document from that event alone, which the replay then overwrites with a
    /// document that lacks it (the replay ends at the high-water mark of its start) and later events fold onto.
    /// </summary>
    private static readonly string[] Decided = [TaskModuleProjection.ProjectionName, "task_state", "proplet_view"];

    private const string Usage =
        "usage: propeller-manager rebuild <projection>|all [--force] [--timeout <duration>]   (task_module, task_state, proplet_view, task_activity; task_state rebuilds task_module first; stop the managers first; --timeout: each projection's replay, default 24h)";

    public static async Task<int> RunAsync(string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        if (args.Length == 0 || args[0].StartsWith('-'))
        {
            await error.WriteLineAsync(Usage);
            return 2;
        }

        var force = false;
        var timeout = DefaultTimeout;
        var settings = new List<string>();
        for (var i = 1; i < args.Length; i++)
        {
            if (args[i] == "--force")
            {
                force = true;
            }
            else if (args[i] == "--timeout" || args[i].StartsWith("--timeout=", StringComparison.Ordinal))
            {
                // --timeout 6h or --timeout=6h (the second was passed on as a setting, and the default applied silently).
                var joined = args[i].Length > "--timeout".Length;
                var value = joined ? args[i]["--timeout=".Length..] : i + 1 < args.Length ? args[i + 1] : null;
                if (value is null || !GoDuration.TryParse(value, out timeout) || timeout <= TimeSpan.Zero || timeout > MaxTimeout)
                {
                    await error.WriteLineAsync(
                        $"propeller-manager rebuild: --timeout takes a positive duration such as 90m or 6h, at most {MaxTimeout.TotalDays:F0} days (got '{value}')");
                    return 2;
                }

                i += joined ? 0 : 1;
            }
            else
            {
                settings.Add(args[i]);
            }
        }

        WebApplication app;
        try
        {
            app = ManagerApp.Build([.. settings], runDaemon: false);
        }
        catch (ManagerConfigurationException ex)
        {
            await error.WriteLineAsync($"propeller-manager: {ex.Message}");
            return 2;
        }

        await using (app)
        {
            var store = app.Services.GetRequiredService<IDocumentStore>();
            using var stop = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) =>
            {
                e.Cancel = true;
                stop.Cancel();
            };
            try
            {
                // An unknown name is told (with the registered ones) before anything else is looked at.
                var rebuilder = ActivatorUtilities.CreateInstance<MartenProjectionRebuilder>(app.Services);
                if (args[0] != "all" && !rebuilder.Projections.Contains(args[0], StringComparer.Ordinal))
                {
                    await error.WriteLineAsync($"propeller-manager rebuild: no projection named '{args[0]}' (registered: {string.Join(", ", rebuilder.Projections)}, or all)");
                    return 2;
                }

                // The schema's lock for the whole run, taken before looking for managers: one starting after the look waits
                // at its schema step until the rebuild ends (it changed the schema beside the rebuild and served from the
                // documents the rebuild had deleted).
                var dataSource = app.Services.GetRequiredService<NpgsqlDataSource>();
                await using var schemaLock = await SchemaLock.TakeAsync(dataSource, app.Services.GetRequiredService<IOptions<EventStoreOptions>>().Value.Schema, stop.Token);
                // The task view refers to the large modules the task_module documents hold (ADR 0018): those first.
                var names = args[0] switch
                {
                    "all" => rebuilder.Projections,
                    "task_state" => [TaskModuleProjection.ProjectionName, args[0]],
                    _ => [args[0]],
                };
                if (await RunningManagersAsync(dataSource, schemaLock.ProcessId, stop.Token) is > 0 and var connections)
                {
                    if (!force)
                    {
                        await error.WriteLineAsync(
                            $"propeller-manager rebuild: managers are running on this schema ({connections} connection(s) in pg_stat_activity): " +
                            "stop them first (a rebuild deletes the documents they decide on), or pass --force");
                        return 2;
                    }

                    if (names.Intersect(Decided, StringComparer.Ordinal).ToArray() is [_, ..] decided)
                    {
                        await error.WriteLineAsync(
                            $"propeller-manager rebuild: managers are running on this schema ({connections} connection(s) in pg_stat_activity), and --force does not " +
                            $"rebuild {string.Join(", ", decided)} beside them: the managers decide on those documents while the rebuild deletes them, and an event " +
                            "they append meanwhile is lost from its document when the replay overwrites it; stop them first");
                        return 2;
                    }
                }

                await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(stop.Token);
                foreach (var name in names)
                {
                    await rebuilder.RebuildAsync(name, timeout, stop.Token);
                }

                return 0;
            }
            catch (ArgumentException ex)
            {
                await error.WriteLineAsync($"propeller-manager rebuild: {ex.Message}");
                return 2;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                await error.WriteLineAsync("propeller-manager rebuild: interrupted; the projection is incomplete until it is rebuilt again");
                return 1;
            }
            catch (Exception ex)
            {
                // PostgreSQL unreachable, the schema refused, Marten's timeout: a message and exit 1, not a stack trace
                // and an abort (the operator's script reads the exit code).
                // Marten ends a replay past its timeout with a TimeoutException, or a cancellation (its optimized replay).
                var reason = ex is TimeoutException or OperationCanceledException
                    ? $"{ex.Message} (a projection's replay may take --timeout, now {timeout})"
                    : ex.Message;
                await error.WriteLineAsync($"propeller-manager rebuild: {reason}; the projection is incomplete until rebuilt again");
                return 1;
            }
        }
    }

    /// <summary>Connections other than this one and the lock's (<paramref name="lockProcess"/>) that carry the name a manager's connections on this schema carry.</summary>
    private static async Task<long> RunningManagersAsync(NpgsqlDataSource dataSource, int lockProcess, CancellationToken cancellationToken)
    {
        var name = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).ApplicationName;
        await using var command = dataSource.CreateCommand(
            "select count(*) from pg_stat_activity where datname = current_database() and application_name = $1 and pid <> pg_backend_pid() and pid <> $2");
        command.Parameters.Add(new NpgsqlParameter { Value = name });
        command.Parameters.Add(new NpgsqlParameter { Value = lockProcess });
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
