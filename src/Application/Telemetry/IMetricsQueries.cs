namespace Propeller.Application.Telemetry;

/// <summary>
/// Metrics samples reported by proplets (spec propeller-manager.md §6.6). They are telemetry, stored append-only
/// beside the event store rather than as events: they describe, they do not decide.
/// </summary>
public interface IMetricsQueries
{
    /// <summary>A task's samples, newest first.</summary>
    Task<MetricsPage<TaskMetricsSample>> TaskMetricsAsync(Guid taskId, long offset, int limit, CancellationToken cancellationToken);

    /// <summary>A proplet's samples, newest first.</summary>
    Task<MetricsPage<PropletMetricsSample>> PropletMetricsAsync(string propletId, long offset, int limit, CancellationToken cancellationToken);
}

/// <summary>One page of samples and how many there are in all.</summary>
public sealed record MetricsPage<T>(long Total, IReadOnlyList<T> Items);

/// <summary>A task sample; <see cref="Metrics"/> and <see cref="Aggregated"/> are the JSON objects as reported.</summary>
public sealed record TaskMetricsSample(Guid TaskId, string PropletId, DateTimeOffset Timestamp, string Metrics, string? Aggregated);

/// <summary>A proplet sample; <see cref="Cpu"/> and <see cref="Memory"/> are the JSON objects as reported.</summary>
public sealed record PropletMetricsSample(string PropletId, string? Namespace, DateTimeOffset Timestamp, string Cpu, string Memory);
