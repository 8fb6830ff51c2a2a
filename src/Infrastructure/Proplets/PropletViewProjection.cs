using Propeller.Application.EventStore;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Serialization;
using static Propeller.Domain.Proplets.PropletEvent;

namespace Propeller.Infrastructure.Proplets;

/// <summary>
/// The proplet registry's read model, written inline from proplet events. Heartbeats update the same row directly
/// (<see cref="PostgresPropletRegistry.RecordHeartbeatAsync"/>), so liveness costs no event per heartbeat.
/// </summary>
public sealed class PropletViewProjection : IProjection
{
    public string Name => "proplet_view";

    public bool UsesGlobalPositions => false;

    public IReadOnlyCollection<string>? EventTypes { get; } =
        ["proplet.registered.v1", "proplet.metadata_changed.v1", "proplet.went_offline.v1", "proplet.came_online.v1", "proplet.deleted.v1"];

    public Task EnsureSchemaAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Add($"""
            create table if not exists {context.Schema}.proplet_view (
                id            text primary key,
                name          text not null,
                metadata      jsonb not null,
                offline       boolean not null default false,
                registered_at timestamptz not null,
                last_alive_at timestamptz,
                alive_history timestamptz[] not null default array[]::timestamptz[]);
            """);
        return Task.CompletedTask;
    }

    public Task ApplyAsync(ProjectionContext context, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(events);
        var table = $"{context.Schema}.proplet_view";
        foreach (var e in events)
        {
            _ = e.Data switch
            {
                PropletRegistered r => context.Add(
                    $"""
                    insert into {table} (id, name, metadata, registered_at) values ($1, $2, $3::jsonb, $4)
                    on conflict (id) do update set name = excluded.name, metadata = excluded.metadata, offline = false,
                        registered_at = excluded.registered_at, last_alive_at = null, alive_history = array[]::timestamptz[]
                    """,
                    r.PropletId.Value, r.Name, EventSerializer.SerializeState(r.Metadata), r.RegisteredAt),
                PropletMetadataChanged m => context.Add($"update {table} set metadata = $2::jsonb where id = $1", m.PropletId.Value, EventSerializer.SerializeState(m.Metadata)),
                PropletWentOffline o => context.Add($"update {table} set offline = true where id = $1", o.PropletId.Value),
                PropletCameOnline o => context.Add($"update {table} set offline = false where id = $1", o.PropletId.Value),
                PropletDeleted d => context.Add($"delete from {table} where id = $1", d.PropletId.Value),
                _ => null,
            };
        }

        return Task.CompletedTask;
    }

    public Task ResetAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Add($"truncate {context.Schema}.proplet_view");
        return Task.CompletedTask;
    }
}
