using Propeller.Application.EventStore;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.Projections;

public sealed class InlineProjectionTests : IAsyncLifetime
{
    private readonly RecordingProjection _projection = new("inline", ["task.created.v1"]);
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("es_inline", c => c.Add(_projection, ProjectionLifecycle.Inline));
        await _db.Daemon().EnsureAsync(Ct);
    }

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task InlineProjection_IsWrittenInTheAppendTransaction_WithPositions()
    {
        var id = NewId();

        await _db.Store.AppendAsync("task-a", "task", ExpectedVersion.NoStream, [Created(id), Numbered(id, 1)], Meta(), Ct);

        (await _db.ScalarAsync<long>("select count(*) from {schema}.seen_inline")).ShouldBe(1);
        (await _db.ScalarAsync<long>("select seq from {schema}.seen_inline")).ShouldBe(
            await _db.ScalarAsync<long>("select seq from {schema}.events where version = 1"));
        (await _db.ScalarAsync<string>("select tx from {schema}.seen_inline")).ShouldBe(
            await _db.ScalarAsync<string>("select tx_id::text from {schema}.events where version = 1"));
    }

    [Fact]
    public async Task FailingInlineProjection_RollsBackTheEvents()
    {
        _projection.Poison = _ => true;
        var id = NewId();

        await Should.ThrowAsync<InvalidOperationException>(() => _db.Store.AppendAsync("task-b", "task", ExpectedVersion.Any, [Created(id)], Meta(), Ct));

        (await _db.ScalarAsync<long>("select count(*) from {schema}.events")).ShouldBe(0);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.streams")).ShouldBe(0);
    }

    [Fact]
    public async Task ConcurrencyFailure_WritesNoProjectionRows()
    {
        var id = NewId();
        await _db.Store.AppendAsync("task-c", "task", ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);

        await Should.ThrowAsync<ConcurrencyException>(() => _db.Store.AppendAsync("task-c", "task", ExpectedVersion.NoStream, [Created(id)], Meta(), Ct));

        (await _db.ScalarAsync<long>("select count(*) from {schema}.seen_inline")).ShouldBe(1);
    }

    [Fact]
    public async Task EventsTheInlineProjectionDoesNotRead_SkipTheTransactionPath()
    {
        await _db.Store.AppendAsync("task-d", "task", ExpectedVersion.Any, [Numbered(NewId(), 1)], Meta(), Ct);

        (await _db.ScalarAsync<long>("select count(*) from {schema}.seen_inline")).ShouldBe(0);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.events")).ShouldBe(1);
    }
}
