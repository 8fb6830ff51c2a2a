using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Propeller.Infrastructure.Telemetry;
using Propeller.Infrastructure.Tests.Support;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>
/// The telemetry samples are pruned after MANAGER_METRICS_RETENTION (both tables, in batches, by id below the first row
/// received after the cut); they grew without end.
/// </summary>
public sealed class MetricsRetentionTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("metrics_retention");

    public async ValueTask DisposeAsync() => await _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SamplesReceivedBeforeTheCut_AreDeletedInBatches_NewerOnesKept()
    {
        // 25 old and 3 new rows in each table (batches of 10: three DELETEs for the old ones).
        await _db.ExecuteAsync("""
            insert into {schema}.task_metrics (task_id, proplet_id, sampled_at, metrics, received_at)
              select gen_random_uuid(), 'p', now(), '{}'::jsonb, now() - interval '10 days' from generate_series(1, 25);
            insert into {schema}.task_metrics (task_id, proplet_id, sampled_at, metrics, received_at)
              select gen_random_uuid(), 'p', now(), '{}'::jsonb, now() from generate_series(1, 3);
            insert into {schema}.proplet_metrics (proplet_id, sampled_at, cpu, memory, received_at)
              select 'p', now(), '{}'::jsonb, '{}'::jsonb, now() - interval '10 days' from generate_series(1, 25);
            insert into {schema}.proplet_metrics (proplet_id, sampled_at, cpu, memory, received_at)
              select 'p', now(), '{}'::jsonb, '{}'::jsonb, now() from generate_series(1, 3);
            """);
        var retention = new MetricsRetention(
            _db.DataSource, _db.Options, Options.Create(new MetricsRetentionOptions { Batch = 10 }), TimeProvider.System, NullLogger<MetricsRetention>.Instance);

        (await retention.PruneAsync(DateTimeOffset.UtcNow.AddDays(-7), Ct)).ShouldBe(50);

        (await _db.ScalarAsync<long>("select count(*) from {schema}.task_metrics where received_at > now() - interval '1 day'")).ShouldBe(3);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.task_metrics")).ShouldBe(3);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.proplet_metrics")).ShouldBe(3);
        (await retention.PruneAsync(DateTimeOffset.UtcNow.AddDays(-7), Ct)).ShouldBe(0);

        // Everything older than the cut, nothing newer: the tables empty, and an empty table is no error.
        (await retention.PruneAsync(DateTimeOffset.UtcNow.AddMinutes(1), Ct)).ShouldBe(6);
        (await retention.PruneAsync(DateTimeOffset.UtcNow.AddMinutes(1), Ct)).ShouldBe(0);
    }
}
