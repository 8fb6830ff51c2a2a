using JasperFx.Events;
using Marten.Events.Aggregation;

namespace Propeller.Bench.EventStore;

/// <summary>The rebuild benchmark's read model on Marten: per stream, the event count and last version.</summary>
public sealed class StreamSummary
{
    public Guid Id { get; set; }

    public long Events { get; set; }

    public long LastVersion { get; set; }
}

/// <summary>The same fold as <see cref="StreamSummaryProjection"/>, as a Marten single-stream projection.</summary>
public sealed class StreamSummaryMartenProjection : SingleStreamProjection<StreamSummary, Guid>
{
    public StreamSummaryMartenProjection() => Name = "stream_summary";

    public override StreamSummary? Evolve(StreamSummary? snapshot, Guid id, IEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        snapshot ??= new StreamSummary { Id = id };
        snapshot.Events++;
        snapshot.LastVersion = Math.Max(snapshot.LastVersion, e.Version);
        return snapshot;
    }
}
