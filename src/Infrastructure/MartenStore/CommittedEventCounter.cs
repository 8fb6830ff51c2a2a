using System.Diagnostics.Metrics;
using Marten;
using Marten.Services;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// Counts every event a session committed, by its alias (<c>manager_events_committed{type="task.completed.v1"}</c> on
/// /metrics): tasks created, dispatched, completed and failed, re-dispatches, ignored results, proplets going offline,
/// per second in Prometheus. Registered on the store, so every session counts, whichever handler wrote it; counted after
/// the commit, so a transaction that failed or was retried counts once.
/// </summary>
public sealed class CommittedEventCounter : DocumentSessionListenerBase
{
    public const string MeterName = "Propeller.Events";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> Committed = Meter.CreateCounter<long>(
        "manager_events_committed", "{event}", "Events committed to the store, by type (task.completed.v1, task.redispatch_requested.v1, proplet.went_offline.v1, ...)");

    public override Task AfterCommitAsync(IDocumentSession session, IChangeSet commit, CancellationToken token)
    {
        ArgumentNullException.ThrowIfNull(commit);
        foreach (var committed in commit.GetEvents())
        {
            Committed.Add(1, new KeyValuePair<string, object?>("type", committed.EventTypeName));
        }

        return Task.CompletedTask;
    }
}
