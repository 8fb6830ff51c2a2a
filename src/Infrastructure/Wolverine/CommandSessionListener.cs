using JasperFx.Events;
using Marten;
using Marten.Services;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Scheduling;

namespace Propeller.Infrastructure.Wolverine;

/// <summary>
/// Attached to the Marten session of one Wolverine command (ADR 0014): before Marten's batch it stamps every pending
/// task or proplet event with the command's metadata (the decision time, a v7 id, correlation, user and the plugin decisions as
/// headers); the views are Marten's inline projections (ADR 0010), so they commit with the events and Wolverine's
/// outbox envelopes. After the commit it hands the committed states to this node's command cache and long-polling
/// waiters.
/// </summary>
public sealed class CommandSessionListener : DocumentSessionListenerBase
{
    private readonly EventMetadata _metadata;
    private readonly CommandSessionServices _services;
    private readonly List<(string StreamId, object State, long Version)> _committed = [];
    private readonly Dictionary<Guid, EventMetadata> _perStream = [];

    internal CommandSessionListener(EventMetadata metadata, CommandSessionServices services)
    {
        _metadata = metadata;
        _services = services;
    }

    /// <summary>Announces <paramref name="state"/> at <paramref name="version"/> once the session commits.</summary>
    public void Committed(string streamId, object state, long version) => _committed.Add((streamId, state, version));

    /// <summary>
    /// Appends <paramref name="events"/> to <paramref name="stream"/> (keyed <paramref name="streamId"/> in our terms),
    /// stamped with <paramref name="metadata"/>, and announces <paramref name="state"/> at the stream's new version once
    /// the session commits; returns that version.
    /// </summary>
    public long Append<T>(IEventStream<T> stream, string streamId, IReadOnlyList<object> events, object state, EventMetadata metadata)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(events);
        stream.AppendMany(events);
        Stamping(stream.Id, metadata);
        var version = (stream.StartingVersion ?? 0) + events.Count;
        Committed(streamId, state, version);
        return version;
    }

    /// <summary>
    /// Starts Marten's stream <paramref name="streamKey"/> (keyed <paramref name="streamId"/> in our terms) of aggregate
    /// <typeparamref name="T"/> with <paramref name="events"/>, stamped with <paramref name="metadata"/>, without reading
    /// it first: the append fails at the commit if the stream exists. Announces <paramref name="state"/> once the session
    /// commits; returns the new stream's version.
    /// </summary>
    public long Start<T>(IDocumentSession session, Guid streamKey, string streamId, IReadOnlyList<object> events, object state, EventMetadata metadata)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(events);
        session.Events.StartStream<T>(streamKey, events);
        Stamping(streamKey, metadata);
        Committed(streamId, state, events.Count);
        return events.Count;
    }

    /// <summary>
    /// The events of Marten's stream <paramref name="streamKey"/> get <paramref name="metadata"/> instead of the
    /// command's (a handler that appends to several streams, each with its own correlation and plugin decisions).
    /// </summary>
    public void Stamping(Guid streamKey, EventMetadata metadata) => _perStream[streamKey] = metadata;

    public override Task BeforeSaveChangesAsync(IDocumentSession session, CancellationToken token)
    {
        ArgumentNullException.ThrowIfNull(session);
        foreach (var stream in session.PendingChanges.Streams())
        {
            if (stream.Events.Count > 0 && stream.Events[0].Data is TaskEvent or PropletEvent)
            {
                MartenEventStore.Stamp(stream.Events, _perStream.GetValueOrDefault(stream.Id, _metadata));
            }
        }

        return Task.CompletedTask;
    }

    public override Task AfterCommitAsync(IDocumentSession session, IChangeSet commit, CancellationToken token)
    {
        foreach (var (streamId, committed, version) in _committed)
        {
            // In the view's form (a large module as its reference): the live views show the task view (its module
            // redacted), a stalled /events client holds up to 4096 notices, and the cache holds an active task for as
            // long as it runs. An update is allowed in any state, so a Scheduled or Running task's state could carry a
            // module of up to 100 MiB (267 MB as UTF-16 base64) until its next commit, which may never come.
            var state = committed is TaskState task ? ModuleReference.Referenced(task) : committed;

            // Its one reader waits for an active task's end (it needs the status; the answer redacts a reference as it
            // does a module): a task that is not active keeps only its version (so an older state committed late cannot
            // take its place), not its spec.
            _services.Cache.Set(streamId, state is TaskState { IsActive: false } or TaskState { Deleted: true } ? null : state, version);

            _services.Changes.Notify(streamId, version, state);

            // A dispatch committed is in the task view's load counts now: no longer counted as in flight.
            _services.InFlight?.Settle(streamId);
        }

        return Task.CompletedTask;
    }
}

/// <summary>What <see cref="CommandSessionListener"/> needs from the host (one per host).</summary>
public sealed class CommandSessionServices(AggregateCache cache, StreamChanges changes, PlacementsInFlight? inFlight = null)
{
    internal AggregateCache Cache { get; } = cache;

    internal StreamChanges Changes { get; } = changes;

    /// <summary>Placement's dispatches not committed yet (where this node places tasks).</summary>
    internal PlacementsInFlight? InFlight { get; } = inFlight;

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

/// <summary>Marten's stream key for one of our stream ids, for Wolverine messages that target a stream (the aggregate handler workflow).</summary>
public static class WolverineStreams
{
    /// <summary>The Guid Marten keys <paramref name="streamId"/> by (a task's own id; a name-based UUID for any other id).</summary>
    public static Guid Key(string streamId) => MartenStreamIds.ToGuid(streamId);

    /// <summary>Fetches the streams <paramref name="ids"/> for writing in one batched query (their inline aggregates and versions), in order.</summary>
    public static async Task<IReadOnlyList<IEventStream<T>>> FetchForWritingAsync<T>(IDocumentSession session, IEnumerable<Guid> ids, CancellationToken cancellationToken)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(session);
        var batch = session.CreateBatchQuery();
        var pending = ids.Select(id => batch.Events.FetchForWriting<T>(id)).ToList();
        if (pending.Count == 0)
        {
            return [];
        }

        await batch.Execute(cancellationToken);
        return await Task.WhenAll(pending);
    }
}
