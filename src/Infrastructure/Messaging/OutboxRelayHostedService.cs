using Microsoft.Extensions.Hosting;

namespace Propeller.Infrastructure.Messaging;

/// <summary>Runs the outbox relay for the host's lifetime.</summary>
internal sealed class OutboxRelayHostedService(OutboxRelay relay) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => relay.RunAsync(stoppingToken);
}
