using Marten;
using Propeller.Infrastructure.MartenStore;
using Propeller.Manager.Configuration;

namespace Propeller.Manager.Operations;

/// <summary>
/// `propeller-manager rebuild &lt;projection&gt;|all`: rebuilds a Marten projection (or every one) from the events (with the manager's
/// settings), logging progress. Exit codes: 0 done, 2 usage or settings, 1 failure.
/// </summary>
internal static class RebuildCommand
{
    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0].StartsWith('-'))
        {
            await Console.Error.WriteLineAsync(
                "usage: propeller-manager rebuild <projection>|all   (task_state, proplet_view, task_activity)");
            return 2;
        }

        WebApplication app;
        try
        {
            app = ManagerApp.Build(args[1..], runDaemon: false);
        }
        catch (ManagerConfigurationException ex)
        {
            await Console.Error.WriteLineAsync($"propeller-manager: {ex.Message}");
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
                await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(stop.Token);
                var rebuilder = ActivatorUtilities.CreateInstance<MartenProjectionRebuilder>(app.Services);
                var names = args[0] == "all" ? rebuilder.Projections : [args[0]];
                foreach (var name in names)
                {
                    await rebuilder.RebuildAsync(name, TimeSpan.FromMinutes(30), stop.Token);
                }

                return 0;
            }
            catch (ArgumentException ex)
            {
                await Console.Error.WriteLineAsync($"propeller-manager rebuild: {ex.Message}");
                return 2;
            }
        }
    }
}
