using Marten;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Propeller.Infrastructure.EventStore;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// Applies Marten's schema (event tables, append function, projected documents) at startup, after our own migrations
/// proved PostgreSQL reachable, so no request pays for it; a failure stops the host with a message naming the schema
/// and the cause.
/// </summary>
internal sealed class MartenSchemaHostedService(IDocumentStore store, IOptions<EventStoreOptions> options, ILogger<MartenSchemaHostedService> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var schema = options.Value.Schema;
        try
        {
            await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw new EventStoreUnavailableException(
                $"Marten's event store schema could not be applied to schema '{schema}' (check {options.Value.ConnectionSettingName} and the database user's rights): {ex.Message}", ex);
        }

        MartenLog.SchemaApplied(logger, schema);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
