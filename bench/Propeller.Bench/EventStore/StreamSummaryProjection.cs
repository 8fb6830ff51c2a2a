using Propeller.Application.EventStore;
using Propeller.Infrastructure.Projections;

namespace Propeller.Bench.EventStore;

/// <summary>
/// A typical read model for the rebuild benchmark: per stream, the event count and last version. Events of one page are
/// folded in memory per stream (Marten's slicing), then written with one upsert statement per page.
/// </summary>
internal sealed class StreamSummaryProjection : IProjection
{
    public string Name => "stream_summary";

    public IReadOnlyCollection<string>? EventTypes => null;

    public Task EnsureSchemaAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        context.Add($"create table if not exists {context.Schema}.stream_summary (stream_id text primary key, events bigint not null, last_version bigint not null)");
        return Task.CompletedTask;
    }

    public Task ApplyAsync(ProjectionContext context, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken)
    {
        var slices = new Dictionary<string, (long Count, long Last)>(StringComparer.Ordinal);
        foreach (var e in events)
        {
            slices[e.StreamId] = slices.TryGetValue(e.StreamId, out var s) ? (s.Count + 1, Math.Max(s.Last, e.Version)) : (1, e.Version);
        }

        context.Add(
            $"""
            insert into {context.Schema}.stream_summary (stream_id, events, last_version)
            select * from unnest($1::text[], $2::bigint[], $3::bigint[])
            on conflict (stream_id) do update
               set events = stream_summary.events + excluded.events,
                   last_version = greatest(stream_summary.last_version, excluded.last_version)
            """,
            slices.Keys.ToArray(), slices.Values.Select(v => v.Count).ToArray(), slices.Values.Select(v => v.Last).ToArray());
        return Task.CompletedTask;
    }

    public Task ResetAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        context.Add($"truncate {context.Schema}.stream_summary");
        return Task.CompletedTask;
    }
}
