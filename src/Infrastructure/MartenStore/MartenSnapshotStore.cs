using Marten;
using Propeller.Application.EventStore;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// A stream's folded state at a version, as a Marten document keyed by the stream id (the snapshot policy of a decider:
/// a task every 50 events). The state is kept as its JSON text, so any state type is stored the way the views store
/// it; a snapshot of another type alias is ignored.
/// </summary>
public sealed record StreamSnapshot
{
    public string Id { get; set; } = "";

    public string Type { get; init; } = "";

    public long Version { get; init; }

    public string Data { get; init; } = "";
}

/// <summary>Snapshots in Marten (<see cref="StreamSnapshot"/>): one per stream, the newest written wins.</summary>
public sealed class MartenSnapshotStore(IDocumentStore store) : ISnapshotStore
{
    public async Task<Snapshot<TState>?> LoadAsync<TState>(string streamId, string snapshotType, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        var snapshot = await session.LoadAsync<StreamSnapshot>(streamId, cancellationToken);
        if (snapshot is null || snapshot.Type != snapshotType)
        {
            return null;
        }

        var state = EventSerializer.DeserializeState<TState>(snapshot.Data);
        return state is null ? null : new Snapshot<TState>(state, snapshot.Version);
    }

    /// <summary>
    /// Stores the snapshot. Two writers racing may leave the older of their two snapshots; either is a true state at its
    /// version, and loading folds the tail after it, so nothing is lost.
    /// </summary>
    public async Task SaveAsync<TState>(string streamId, string snapshotType, long version, TState state, CancellationToken cancellationToken)
    {
        await using var session = store.LightweightSession();
        session.Store(new StreamSnapshot { Id = streamId, Type = snapshotType, Version = version, Data = EventSerializer.SerializeState(state) });
        await session.SaveChangesAsync(cancellationToken);
    }
}
