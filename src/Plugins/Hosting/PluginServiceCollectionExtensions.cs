using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Propeller.Application.Plugins;
using Propeller.Plugins.Jobs;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Hosting;

/// <summary>Composition of the manager's plugin host (call from the manager's composition root).</summary>
public static class PluginServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="PluginCatalog"/>, <see cref="WasmPluginGate"/> as the <see cref="IPluginGate"/> (replacing
    /// any earlier registration, e.g. <see cref="AllowAllPluginGate"/>), the "Propeller.Plugins" metrics, a hosted
    /// service that migrates the job tables at start and drains notifications at stop, and, when
    /// <see cref="PluginHostOptions.Jobs"/> is set, the job bridge (store, <c>queue.enqueue</c>, worker). The catalog
    /// loads the plugins when it is first resolved. Hosted services start in registration order and stop in reverse:
    /// call this before registering the command pipeline (e.g. Wolverine), so the plugin host starts before it and
    /// drains notifications after it stopped.
    /// </summary>
    public static IServiceCollection AddWasmPlugins(this IServiceCollection services, PluginHostOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(options);
        services.AddSingleton(sp => new PluginMetrics(sp.GetService<IMeterFactory>()));
        if (options.Jobs is { } jobs)
        {
            services.AddSingleton(jobs);
            services.AddSingleton(_ => new PluginJobStore(jobs));
            services.AddSingleton(sp => new PluginJobQueue(sp.GetRequiredService<PluginJobStore>(), jobs, sp.GetRequiredService<TimeProvider>()));
            services.AddSingleton<IPluginJobSink>(sp => sp.GetRequiredService<PluginJobQueue>());
        }

        services.AddSingleton(sp =>
        {
            // Loaded as it is made, so a gate is never used over an empty set (which allows everything) by whatever
            // resolves it first, even before the hosted services start. A directory that is not one fails the resolve,
            // and with it the start (the hosted service below needs the catalog).
            var catalog = new PluginCatalog(options, sp.GetRequiredService<ILogger<PluginCatalog>>(), sp.GetRequiredService<PluginMetrics>(), sp.GetService<IPluginJobSink>());
            try
            {
                // No token here (a factory has none): each start function is bounded by PluginHostOptions.LoadTimeout.
                catalog.Reload(CancellationToken.None);
            }
            catch
            {
                catalog.Dispose();
                throw;
            }

            return catalog;
        });
        services.AddSingleton<WasmPluginGate>();
        services.RemoveAll<IPluginGate>();
        services.AddSingleton<IPluginGate>(sp => sp.GetRequiredService<WasmPluginGate>());
        services.AddHostedService(sp => new PluginHostService(
            sp.GetRequiredService<PluginCatalog>(), sp.GetRequiredService<WasmPluginGate>(), sp.GetService<PluginJobStore>()));
        if (options.Jobs is { RunWorker: true })
        {
            services.AddSingleton<PluginJobWorker>();
            services.AddHostedService(sp => sp.GetRequiredService<PluginJobWorker>());
        }

        return services;
    }
}
