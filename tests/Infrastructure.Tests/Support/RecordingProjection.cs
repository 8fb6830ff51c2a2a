using Propeller.Application.EventStore;
using Propeller.Infrastructure.Projections;

namespace Propeller.Infrastructure.Tests.Support;

/// <summary>
/// Writes one row per event it sees (no unique key, so a duplicate application would show), in apply order.
/// <see cref="Poison"/> makes it throw on chosen events, to exercise the error policy. Without global positions it
/// records position 0 and takes the one-batch (group commit) path of inline appends.
/// </summary>
internal sealed class RecordingProjection(string name, IReadOnlyCollection<string>? eventTypes = null, bool usesGlobalPositions = true) : IProjection
{
    public bool UsesGlobalPositions { get; } = usesGlobalPositions;

    public string Name { get; } = name;

    public IReadOnlyCollection<string>? EventTypes { get; } = eventTypes;

    public Func<StoredEvent, bool>? Poison { get; set; }

    public string Table(ProjectionContext context) => $"{context.Schema}.seen_{Name}";

    public Task EnsureSchemaAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        context.Add($"create table if not exists {Table(context)} (n bigserial primary key, event_id uuid not null, stream_id text not null, version bigint not null, tx text not null, seq bigint not null)");
        return Task.CompletedTask;
    }

    public Task ApplyAsync(ProjectionContext context, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken)
    {
        if (Poison is { } poison && events.Any(poison))
        {
            throw new InvalidOperationException($"poisoned event in {events.Count}");
        }

        context.Add(
            $"insert into {Table(context)} (event_id, stream_id, version, tx, seq) select * from unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::bigint[])",
            events.Select(e => e.EventId).ToArray(),
            events.Select(e => e.StreamId).ToArray(),
            events.Select(e => e.Version).ToArray(),
            events.Select(e => e.Position.TransactionId.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
            events.Select(e => e.Position.Sequence).ToArray());
        return Task.CompletedTask;
    }

    public Task ResetAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        context.Add($"delete from {Table(context)}");
        return Task.CompletedTask;
    }
}
