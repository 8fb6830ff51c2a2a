using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Infrastructure.EventStore;
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
        services.AddEventStore(
            configure,
            catalog => catalog
                .Add(new TaskViewProjection(), ProjectionLifecycle.Inline)
                .Add(new PropletViewProjection(), ProjectionLifecycle.Inline),
            runDaemon,
            marten);
        services.TryAddSingleton<ITaskQueries, PostgresTaskQueries>();
        services.TryAddSingleton<Application.Plugins.IPluginGate>(Application.Plugins.AllowAllPluginGate.Instance);
        services.TryAddSingleton<Application.Telemetry.IMetricsQueries, Telemetry.PostgresMetricsQueries>();
        services.TryAddSingleton<IPropletRegistry, PostgresPropletRegistry>();
        return services;
    }
}
