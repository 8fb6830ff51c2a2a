using Microsoft.Extensions.Hosting;

namespace Propeller.Infrastructure.Projections;

/// <summary>Runs the projection daemon for the host's lifetime.</summary>
internal sealed class ProjectionDaemonHostedService(ProjectionDaemon daemon) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => daemon.RunAsync(stoppingToken);
}
