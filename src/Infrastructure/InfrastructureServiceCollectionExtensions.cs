using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Infrastructure.MartenStore;

namespace Propeller.Infrastructure;

/// <summary>Everything a manager host needs from Infrastructure: the event store on Marten and the read models.</summary>
public static class InfrastructureServiceCollectionExtensions
{
    public static IServiceCollection AddInfrastructure(
        this IServiceCollection services, Action<EventStoreOptions> configure, bool runDaemon = true,
        Action<Marten.MartenServiceCollectionExtensions.MartenConfigurationExpression>? marten = null)
    {
        ArgumentNullException.ThrowIfNull(configure);

        // The views are Marten documents written by Marten's inline projections (ADR 0010).
        services.AddEventStore(configure, runDaemon, marten);
        services.TryAddSingleton<ITaskQueries, MartenTaskQueries>();
        services.TryAddSingleton<Application.Scheduling.IWaitingTaskQueries, MartenTaskQueries>();
        services.TryAddSingleton<IPropletRegistry, MartenPropletRegistry>();
        services.TryAddSingleton<TaskModules>();
        services.TryAddSingleton<Application.Plugins.IPluginGate>(Application.Plugins.AllowAllPluginGate.Instance);
        services.TryAddSingleton<Application.Telemetry.IMetricsQueries, Telemetry.PostgresMetricsQueries>();
        return services;
    }
}
