using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Proplets;
using Propeller.Infrastructure.Tasks;

namespace Propeller.Infrastructure;

/// <summary>Everything a manager host needs from Infrastructure: the event store and the read models.</summary>
public static class InfrastructureServiceCollectionExtensions
{
    public static IServiceCollection AddInfrastructure(
        this IServiceCollection services, Action<EventStoreOptions> configure, bool runDaemon = true,
        Action<Marten.MartenServiceCollectionExtensions.MartenConfigurationExpression>? marten = null)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var chosen = new EventStoreOptions();
        configure(chosen);
        if (chosen.Provider == EventStoreProvider.Marten)
        {
            // The views are Marten documents written by Marten's inline projections (ADR 0010 step 2).
            services.AddEventStore(configure, runDaemon: runDaemon, marten: marten);
            services.TryAddSingleton<ITaskQueries, MartenTaskQueries>();
            services.TryAddSingleton<IPropletRegistry, MartenPropletRegistry>();
        }
        else
        {
            services.AddEventStore(
                configure,
                catalog => catalog
                    .Add(new TaskViewProjection(), ProjectionLifecycle.Inline)
                    .Add(new PropletViewProjection(), ProjectionLifecycle.Inline),
                runDaemon,
                marten);
            services.TryAddSingleton<ITaskQueries, PostgresTaskQueries>();
            services.TryAddSingleton<IPropletRegistry, PostgresPropletRegistry>();
        }

        services.TryAddSingleton<Application.Plugins.IPluginGate>(Application.Plugins.AllowAllPluginGate.Instance);
        services.TryAddSingleton<Application.Telemetry.IMetricsQueries, Telemetry.PostgresMetricsQueries>();
        return services;
    }
}
