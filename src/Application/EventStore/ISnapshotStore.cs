namespace Propeller.Application.EventStore;

/// <summary>Optional per-aggregate snapshots: loading = snapshot + tail. A snapshot of another type alias is ignored.</summary>
public interface ISnapshotStore
{
    Task<Snapshot<TState>?> LoadAsync<TState>(string streamId, string snapshotType, CancellationToken cancellationToken);

    Task SaveAsync<TState>(string streamId, string snapshotType, long version, TState state, CancellationToken cancellationToken);
}
