using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Messaging;
using Propeller.Application.Scheduling;
using Propeller.Infrastructure.Messaging;
using Propeller.Infrastructure.Mqtt;
using Propeller.Infrastructure.Scheduling;

namespace Propeller.Infrastructure;

/// <summary>The manager's messaging side: broker connection, inbound handler, outbox relay and scheduler.</summary>
public static class MessagingServiceCollectionExtensions
{
    /// <param name="services">The host's services.</param>
    /// <param name="mqtt">The broker connection's settings.</param>
    /// <param name="scheduler">The scheduler's settings.</param>
    /// <param name="schedulingLoops">
    /// Our DispatchScheduler and LivenessMonitor loops; false on the Wolverine pipeline, where placement, the sweep and
    /// liveness are Wolverine handlers and scheduled messages (ADR 0014).
    /// </param>
    public static IServiceCollection AddManagerMessaging(this IServiceCollection services, Action<MqttBridgeOptions> mqtt, Action<SchedulerOptions> scheduler, bool schedulingLoops = true)
    {
        services.AddOptions<MqttBridgeOptions>().Configure(mqtt);
        services.AddOptions<SchedulerOptions>().Configure(scheduler);
        services.AddOptions<OutboxOptions>().BindConfiguration(OutboxOptions.Section);
        services.TryAddSingleton<ManagerMqtt>();
        services.TryAddSingleton<IMessagePublisher>(sp => sp.GetRequiredService<ManagerMqtt>());
        services.TryAddSingleton<LatentInvoker>();
        services.TryAddSingleton<InboundHandler>();
        services.TryAddSingleton<WorkSignals>();
        services.TryAddSingleton<OutboxRelay>();
        services.TryAddSingleton<ICommittedMessages>(sp => sp.GetRequiredService<OutboxRelay>());
        services.AddHostedService<MqttBridgeHostedService>();
        services.AddHostedService<OutboxRelayHostedService>();
        if (schedulingLoops)
        {
            services.TryAddSingleton<DispatchScheduler>();
            services.TryAddSingleton<IImmediatePlacement>(sp => sp.GetRequiredService<DispatchScheduler>());
            services.AddHostedService(sp => sp.GetRequiredService<DispatchScheduler>());
            services.AddHostedService<LivenessMonitor>();
        }

        return services;
    }
}
