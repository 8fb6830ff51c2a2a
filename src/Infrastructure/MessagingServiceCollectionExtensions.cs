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
    public static IServiceCollection AddManagerMessaging(this IServiceCollection services, Action<MqttBridgeOptions> mqtt, Action<SchedulerOptions> scheduler)
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
        services.TryAddSingleton<DispatchScheduler>();
        services.TryAddSingleton<IImmediatePlacement>(sp => sp.GetRequiredService<DispatchScheduler>());
        services.AddHostedService(sp => sp.GetRequiredService<DispatchScheduler>());
        services.AddHostedService<LivenessMonitor>();
        return services;
    }
}
