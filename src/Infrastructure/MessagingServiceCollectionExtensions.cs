using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Messaging;
using Propeller.Application.Proplets;
using Propeller.Infrastructure.Mqtt;
using Propeller.Infrastructure.Scheduling;

namespace Propeller.Infrastructure;

/// <summary>The manager's messaging side: the broker connection and the inbound handler (placement, the sweep and liveness are Wolverine handlers and scheduled messages, ADR 0014).</summary>
public static class MessagingServiceCollectionExtensions
{
    /// <param name="services">The host's services.</param>
    /// <param name="mqtt">The broker connection's settings.</param>
    /// <param name="scheduler">The scheduler's settings.</param>
    public static IServiceCollection AddManagerMessaging(this IServiceCollection services, Action<MqttBridgeOptions> mqtt, Action<SchedulerOptions> scheduler)
    {
        services.AddOptions<MqttBridgeOptions>().Configure(mqtt);
        services.AddOptions<SchedulerOptions>().Configure(scheduler);
        services.TryAddSingleton<HeartbeatWitness>();
        services.TryAddSingleton<ManagerMqtt>();
        services.TryAddSingleton<IMessagePublisher>(sp => sp.GetRequiredService<ManagerMqtt>());
        services.TryAddSingleton<LatentInvoker>();
        services.TryAddSingleton<InboundHandler>();
        services.AddHostedService<MqttBridgeHostedService>();
        services.AddHostedService<SessionRecovery>();

        return services;
    }
}
