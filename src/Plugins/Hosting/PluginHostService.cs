using Microsoft.Extensions.Hosting;
using Propeller.Plugins.Jobs;

namespace Propeller.Plugins.Hosting;

/// <summary>
/// Makes sure the plugins are loaded when the host starts (the catalog loads itself when it is resolved, which for this
/// service happens before any hosted service starts; a directory that is not a directory fails the start, spec §7.1),
/// migrates the job tables when the bridge is on, and on shutdown waits for outstanding notifications. Registered
/// before the command pipeline, it starts before it and stops after it.
/// </summary>
internal sealed class PluginHostService(PluginCatalog catalog, WasmPluginGate gate, PluginJobStore? jobs = null) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (jobs is not null)
        {
            await jobs.MigrateAsync(cancellationToken);
        }

        if (catalog.LoadedAt is null)
        {
            catalog.Reload(cancellationToken);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => gate.DrainAsync(cancellationToken);
}
