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
    /// service that loads the plugins at start and drains notifications at stop, and, when
    /// <see cref="PluginHostOptions.Jobs"/> is set, the job bridge (store, <c>queue.enqueue</c>, worker).
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

        services.AddSingleton(sp => new PluginCatalog(
            options,
            sp.GetRequiredService<ILogger<PluginCatalog>>(),
            sp.GetRequiredService<PluginMetrics>(),
            sp.GetService<IPluginJobSink>()));
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
