using Marten;
using Marten.Services;
using Microsoft.Extensions.Options;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Projections;

namespace Propeller.Infrastructure.Wolverine;

/// <summary>
/// Attached to the Marten session of one Wolverine command (ADR 0014): before Marten's batch it stamps every pending
/// task event with the command's metadata (the decision time, a v7 id, correlation, user and the plugin decisions as
/// headers) and writes our inline views on the session's transaction, so the events, the views and Wolverine's
/// outbox envelopes commit together; after the commit it hands the committed states to this node's command cache and
/// long-polling waiters. The views stay ours until they move to Marten projections (ADR 0010 step 2).
/// </summary>
public sealed class CommandSessionListener : DocumentSessionListenerBase
{
    private readonly EventMetadata _metadata;
    private readonly CommandSessionServices _services;
    private readonly List<(string StreamId, object State, long Version)> _committed = [];

    internal CommandSessionListener(EventMetadata metadata, CommandSessionServices services)
    {
        _metadata = metadata;
        _services = services;
    }

    /// <summary>Announces <paramref name="state"/> at <paramref name="version"/> once the session commits.</summary>
    public void Committed(string streamId, object state, long version) => _committed.Add((streamId, state, version));

    public override async Task BeforeSaveChangesAsync(IDocumentSession session, CancellationToken token)
    {
        ArgumentNullException.ThrowIfNull(session);
        var stored = new List<StoredEvent>();
        foreach (var stream in session.PendingChanges.Streams())
        {
            if (stream.Events.Count == 0 || stream.Events[0].Data is not TaskEvent)
            {
                continue;
            }

            MartenEventStore.Stamp(stream.Events, _metadata);
            var streamId = TaskAggregate.StreamId(new TaskId(stream.Id));
            var before = stream.ExpectedVersionOnServer ?? 0;
            for (var i = 0; i < stream.Events.Count; i++)
            {
                var e = stream.Events[i];
                stored.Add(new StoredEvent(e.Id, new GlobalPosition(0, 0), streamId, before + i + 1, e.EventTypeName, e.Data, _metadata));
            }
        }

        if (stored.Count == 0)
        {
            return;
        }

        // Our views go on the session's own transaction (Npgsql runs every command of a connection in its open
        // transaction), ahead of Marten's batch: a lost race rolls both back.
        await session.BeginTransactionAsync(token);
        await using var context = new ProjectionContext(session.Connection!, null, _services.Schema);
        await OutboxRows.ApplyInlineAsync(context, _services.Projections.Inline, [.. stored], token);
        await context.FlushAsync(token);
    }

    public override Task AfterCommitAsync(IDocumentSession session, IChangeSet commit, CancellationToken token)
    {
        foreach (var (streamId, state, version) in _committed)
        {
            _services.Cache.Set(streamId, state, version);
            _services.Changes.Notify(streamId, version, state);
        }

        return Task.CompletedTask;
    }
}

/// <summary>What <see cref="CommandSessionListener"/> needs from the host (one per host).</summary>
public sealed class CommandSessionServices(ProjectionCatalog projections, IOptions<EventStoreOptions> options, AggregateCache cache, StreamChanges changes)
{
    internal ProjectionCatalog Projections { get; } = projections;

    internal string Schema { get; } = Sql.Identifier((options ?? throw new ArgumentNullException(nameof(options))).Value.Schema);

    internal AggregateCache Cache { get; } = cache;

    internal StreamChanges Changes { get; } = changes;

    /// <summary>Attaches a listener carrying <paramref name="metadata"/> to <paramref name="session"/>.</summary>
    public CommandSessionListener Attach(IDocumentSession session, EventMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(session);
        var listener = new CommandSessionListener(metadata, this);
        session.Listeners.Add(listener);
        session.CorrelationId = metadata.CorrelationId;
        session.CausationId = metadata.CausationId;
        session.LastModifiedBy = metadata.UserId;
        return listener;
    }
}
