using Microsoft.Extensions.Hosting;
using Propeller.Infrastructure.Projections;

namespace Propeller.Infrastructure.EventStore;

/// <summary>
/// Migrates the schema and creates the projections' tables before anything else starts (hosted services start in
/// registration order), so inline projections can be written by the first request.
/// </summary>
internal sealed class SchemaMigrationHostedService(SchemaMigrator migrator, ProjectionDaemon projections) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await migrator.MigrateAsync(cancellationToken);
        await projections.EnsureAsync(cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
