using System.Diagnostics;
using Marten;
using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// Rebuilds a Marten projection from the events with Marten's daemon (teardown, replay from the start), logging the
/// start (events in the store), the progress every <see cref="ProgressInterval"/> and the end (events/s).
/// </summary>
public sealed class MartenProjectionRebuilder(IDocumentStore store, ILogger<MartenProjectionRebuilder> logger)
{
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Every registered projection's name, inline and async (task_state, proplet_view, task_activity).</summary>
    public IReadOnlyList<string> Projections => [.. store.Options.Events.Projections().Select(p => p.Name)];

    /// <summary>
    /// Rebuilds <paramref name="projection"/> (its name, e.g. "task_state"); returns how many events the store held when
    /// it started. <paramref name="timeout"/> bounds the whole replay (Marten's shard timeout), not a page of it.
    /// </summary>
    /// <exception cref="ArgumentException">No projection of that name is registered.</exception>
    public async Task<long> RebuildAsync(string projection, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(projection);
        if (!store.Options.Events.Projections().Any(p => string.Equals(p.Name, projection, StringComparison.Ordinal)))
        {
            throw new ArgumentException(
                $"no Marten projection named '{projection}' (registered: {string.Join(", ", store.Options.Events.Projections().Select(p => p.Name))})", nameof(projection));
        }

        var statistics = await store.Advanced.FetchEventStoreStatistics(token: cancellationToken);
        MartenLog.RebuildStarted(logger, projection, statistics.EventCount, statistics.EventSequenceNumber);
        var stopwatch = Stopwatch.StartNew();
        using var daemon = await store.BuildProjectionDaemonAsync();
        var rebuild = daemon.RebuildProjectionAsync(projection, timeout, cancellationToken);
        while (await Task.WhenAny(rebuild, Task.Delay(ProgressInterval, cancellationToken)) != rebuild)
        {
            MartenLog.RebuildProgress(logger, projection, await ProgressAsync(projection, cancellationToken), statistics.EventSequenceNumber, stopwatch.Elapsed);
        }

        // The progress row of an inline projection is gone once its rebuild ends: the count is the store's.
        await rebuild;
        MartenLog.RebuildFinished(logger, projection, statistics.EventCount, stopwatch.Elapsed, statistics.EventCount / Math.Max(stopwatch.Elapsed.TotalSeconds, 0.001));
        return statistics.EventCount;
    }

    private async Task<long> ProgressAsync(string projection, CancellationToken cancellationToken)
    {
        var shards = await store.Advanced.AllProjectionProgress(token: cancellationToken);
        return shards.Where(s => s.ShardName.StartsWith(projection + ":", StringComparison.Ordinal)).Select(s => s.Sequence).DefaultIfEmpty(0).Max();
    }
}
