using Marten;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Manager.Configuration;

namespace Propeller.Manager.Operations;

/// <summary>
/// `propeller-manager rebuild &lt;projection&gt;|all [--force]`: rebuilds a Marten projection (or every one) from the events
/// (with the manager's settings), logging progress. Marten's rebuild first deletes the projection's documents: a manager
/// running meanwhile would decide its commands on tasks it cannot find (a result lost as "task not found"), so the
/// command refuses while managers hold connections on the schema (pg_stat_activity, by the name their connections
/// carry), unless --force; it holds the schema's lock (<see cref="SchemaLock"/>) throughout, so a manager starting
/// meanwhile waits for it. Exit codes: 0 done, 2 usage, settings or managers running, 1 failure or interrupted.
/// </summary>
internal static class RebuildCommand
{
    public static async Task<int> RunAsync(string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        if (args.Length == 0 || args[0].StartsWith('-'))
        {
            await error.WriteLineAsync(
                "usage: propeller-manager rebuild <projection>|all [--force]   (task_module, task_state, proplet_view, task_activity; task_state rebuilds task_module first; stop the managers first)");
            return 2;
        }

        var force = args.Contains("--force", StringComparer.Ordinal);
        WebApplication app;
        try
        {
            app = ManagerApp.Build([.. args[1..].Where(a => a != "--force")], runDaemon: false);
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
                if (!force && await RunningManagersAsync(dataSource, schemaLock.ProcessId, stop.Token) is > 0 and var connections)
                {
                    await error.WriteLineAsync(
                        $"propeller-manager rebuild: managers are running on this schema ({connections} connection(s) in pg_stat_activity): " +
                        "stop them first (a rebuild deletes the documents they decide on), or pass --force");
                    return 2;
                }

                await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(stop.Token);
                // The task view refers to the large modules the task_module documents hold (ADR 0018): those first.
                var names = args[0] switch
                {
                    "all" => rebuilder.Projections,
                    "task_state" => [TaskModuleProjection.ProjectionName, args[0]],
                    _ => [args[0]],
                };
                foreach (var name in names)
                {
                    await rebuilder.RebuildAsync(name, TimeSpan.FromMinutes(30), stop.Token);
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
