using Microsoft.Extensions.Hosting;

namespace Propeller.Infrastructure.EventStore;

/// <summary>Migrates the schema before anything else starts (hosted services start in registration order).</summary>
internal sealed class SchemaMigrationHostedService(SchemaMigrator migrator) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => migrator.MigrateAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
