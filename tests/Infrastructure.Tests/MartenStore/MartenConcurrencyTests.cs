using System.Text;
using Marten;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>
/// Concurrent commands through the event store port on Marten: many tasks with two writers each (as on two nodes); the
/// loser of each race gets a concurrency error, its command is decided again, and nothing is lost.
/// </summary>
public sealed class MartenConcurrencyTests : IAsyncLifetime
{
    private TestDatabase _db = null!;
    private DocumentStore _marten = null!;
    private MartenEventStore _store = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("marten_race");
        (_marten, _store) = (_db.Marten, _db.Store);
    }

    public async ValueTask DisposeAsync()
    {
        await _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ConcurrentCommandsOnManyTasks_OneConflictRetried_NoneLost()
    {
        var loader = new AggregateLoader(_store);
        var ids = Enumerable.Range(0, 8).Select(_ => NewId()).ToArray();
        var creator = new StreamCommands(_store, loader);
        await Task.WhenAll(ids.Select(id => creator.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new TaskCommand.CreateTask(id, TaskSpec.Named("v0"), T0), Meta(), Ct)));

        // Two writers per task (as on two nodes): one of each pair loses and is retried.
        var results = await Task.WhenAll(ids.SelectMany(id => Enumerable.Range(1, 2).Select(n =>
            new StreamCommands(_store, loader).HandleAsync(
                TaskAggregate.Decider, TaskAggregate.StreamId(id), new TaskCommand.UpdateTask(id, new TaskSpecPatch { Name = $"v{n}" }, T0.AddSeconds(n)), Meta(n), Ct))));

        results.ShouldAllBe(r => !r.IsRejected);
        foreach (var id in ids)
        {
            var history = (await _store.ReadStreamAsync(TaskAggregate.StreamId(id), StreamReadOptions.All, Ct))!;
            history.Events.Select(e => e.Version).ShouldBe([1, 2, 3]);
            history.Events.Skip(1).Select(e => ((TaskEvent.TaskUpdated)e.Data).Spec.Name).Order().ShouldBe(["v1", "v2"]);
        }

        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_doc_taskstate where data->'spec'->>'name' in ('v1', 'v2')")).ShouldBe(ids.Length);
    }
}
