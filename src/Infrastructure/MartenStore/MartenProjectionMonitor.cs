using System.Diagnostics.Metrics;
using JasperFx;
using JasperFx.Events.Projections;
using Marten;
using IProjectionDaemon = JasperFx.Events.Daemon.IProjectionDaemon;
using Marten.Events.Daemon.Coordination;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>One async projection as the monitor last saw it.</summary>
/// <param name="Projection">Its name (task_activity, ...).</param>
/// <param name="Status">running, paused or stopped in this host's daemon; "not run here" when the host runs no daemon, or another node runs it (distributed).</param>
/// <param name="Sequence">The last event sequence it applied (Marten's progression row).</param>
/// <param name="Highest">The highest event sequence in the store.</param>
public sealed record ProjectionHealth(string Projection, string Status, long Sequence, long Highest)
{
    public const string Running = "running";

    public const string NotRunHere = "not run here";

    /// <summary>Events committed that the projection has not applied yet.</summary>
    public long Lag => Math.Max(0, Highest - Sequence);
}

/// <summary>Settings of the async projections' health (ProjectionHealth section; the manager sets it from MANAGER_PROJECTION_MAX_LAG).</summary>
public sealed class ProjectionHealthOptions
{
    /// <summary>/health/ready fails while an async projection is more events than this behind the store.</summary>
    public long MaxLag { get; set; } = 10_000;

    /// <summary>
    /// A projection this host does not run fails /health/ready only when it is more than <see cref="MaxLag"/> behind and
    /// its progression has not moved for this long: the node that runs it is judged at once, but a failover (a dead
    /// node's projections reassigned after its stale timeout) let a busy store's lag pass MaxLag on every other node
    /// at once, and the whole cluster answered 503 over a dashboard's counter.
    /// </summary>
    public TimeSpan StallTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// True when the projections are distributed among several nodes (the manager's Balanced mode on Wolverine, ADR
    /// 0014): a projection that this host's daemon does not run runs on another node and is judged by its lag alone.
    /// </summary>
    public bool Distributed { get; set; }
}

/// <summary>
/// Watches Marten's async daemon (ADR 0010 step 2): per async projection its status in this host's daemon and its
/// lag (the store's highest event sequence minus the projection's progression), sampled on demand by /metrics and
/// /health/ready and published as the gauges <c>projection_lag_events</c> and <c>projection_running</c>.
/// </summary>
public sealed class MartenProjectionMonitor : IDisposable
{
    public const string MeterName = "Propeller.Projections";

    private readonly IDocumentStore _store;
    private readonly IServiceProvider _services;
    private readonly NpgsqlDataSource _dataSource;
    private readonly string _schema;
    private readonly ProjectionHealthOptions _options;
    private readonly Meter _meter;
    private readonly TimeProvider _time;
    private readonly Lock _progressGate = new();
    private readonly Dictionary<string, (long Sequence, DateTimeOffset Since)> _progress = new(StringComparer.Ordinal);
    private volatile IReadOnlyList<ProjectionHealth> _last = [];

    public MartenProjectionMonitor(
        IDocumentStore store, IServiceProvider services, NpgsqlDataSource dataSource, IOptions<EventStoreOptions> storeOptions, IOptions<ProjectionHealthOptions> options)
    {
        ArgumentNullException.ThrowIfNull(storeOptions);
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _services = services;
        _dataSource = dataSource;
        _schema = Sql.Identifier(storeOptions.Value.Schema);
        _options = options.Value;
        _time = services.GetService<TimeProvider>() ?? TimeProvider.System;
        var schema = storeOptions.Value.Schema;
        _meter = services.GetService<IMeterFactory>()?.Create(MeterName) ?? new Meter(MeterName);
        _meter.CreateObservableGauge(
            "projection_lag_events",
            () => _last.Select(p => new Measurement<long>(p.Lag, new("projection", p.Projection), new("schema", schema))),
            description: "Events an async projection has not applied yet (sampled by /metrics and /health/ready)");
        _meter.CreateObservableGauge(
            "projection_running",
            () => _last.Select(p => new Measurement<int>(p.Status == ProjectionHealth.Running ? 1 : 0, new("projection", p.Projection), new("schema", schema))),
            description: "1 while an async projection runs in this host's daemon, else 0");
    }

    public long MaxLag => _options.MaxLag;

    /// <summary>The async projections' names, as registered.</summary>
    public IReadOnlyList<string> AsyncProjections =>
        [.. _store.Options.Events.Projections().Where(p => p.Lifecycle == ProjectionLifecycle.Async).Select(p => p.Name)];

    /// <summary>Reads the progression rows and the daemon's agents; the gauges then show this sample.</summary>
    public async Task<IReadOnlyList<ProjectionHealth>> SampleAsync(CancellationToken cancellationToken)
    {
        var progress = await _store.Advanced.AllProjectionProgress(token: cancellationToken);
        await using var command = _dataSource.CreateCommand($"select coalesce(max(seq_id), 0) from {_schema}.mt_events");
        var highest = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        var daemon = DaemonHere();
        var agents = daemon?.CurrentAgents() ?? [];
        var sample = new List<ProjectionHealth>();
        foreach (var name in AsyncProjections)
        {
            var sequence = progress.Where(s => s.ShardName.StartsWith(name + ":", StringComparison.Ordinal)).Select(s => s.Sequence).DefaultIfEmpty(0).Max();
            var agent = agents.FirstOrDefault(a => a.Name.Name == name);
            var status = daemon is null || (agent is null && _options.Distributed) ? ProjectionHealth.NotRunHere : agent?.Status switch
            {
                AgentStatus.Running => ProjectionHealth.Running,
                AgentStatus.Paused => "paused",
                _ => "stopped",
            };
            sample.Add(new ProjectionHealth(name, status, sequence, highest));
        }

        _last = sample;
        return sample;
    }

    /// <summary>This host's daemon; null when it runs none (or, distributed, none runs on this node right now).</summary>
    private IProjectionDaemon? DaemonHere()
    {
        var coordinator = _services.GetService<IProjectionCoordinator>();
        if (coordinator is null)
        {
            return null;
        }

        try
        {
            return coordinator.DaemonForMainDatabase();
        }
        catch (Exception) when (_options.Distributed)
        {
            // Wolverine's coordinator throws (DaemonNotRunningOnThisNodeException; Infrastructure does not reference
            // Wolverine) while the leader has assigned this node no projection of the database: they run elsewhere.
            return null;
        }
    }

    /// <summary>
    /// Null when every async projection runs here within <see cref="MaxLag"/>, and every one run elsewhere (or by no
    /// daemon here) is within it or still moving (<see cref="ProjectionHealthOptions.StallTimeout"/>); else why not.
    /// </summary>
    public async Task<string?> CheckAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var problems = new List<string>();
        foreach (var p in await SampleAsync(cancellationToken))
        {
            var still = StillFor(p, now);
            if (p.Status is not (ProjectionHealth.Running or ProjectionHealth.NotRunHere))
            {
                problems.Add($"projection {p.Projection} is {p.Status}");
            }
            else if (p.Lag > _options.MaxLag && p.Status == ProjectionHealth.Running)
            {
                problems.Add($"projection {p.Projection} is {p.Lag} events behind (more than {_options.MaxLag})");
            }
            else if (p.Lag > _options.MaxLag && still >= _options.StallTimeout)
            {
                problems.Add($"projection {p.Projection} is {p.Lag} events behind (more than {_options.MaxLag}) and has not moved for {Seconds(still)} s");
            }
        }

        return problems.Count == 0 ? null : string.Join("; ", problems);
    }

    /// <summary>How long <paramref name="p"/>'s progression has stood where it is, as far as this node's checks saw.</summary>
    private TimeSpan StillFor(ProjectionHealth p, DateTimeOffset now)
    {
        lock (_progressGate)
        {
            if (!_progress.TryGetValue(p.Projection, out var seen) || seen.Sequence != p.Sequence)
            {
                _progress[p.Projection] = (p.Sequence, now);
                return TimeSpan.Zero;
            }

            return now - seen.Since;
        }
    }

    private static long Seconds(TimeSpan span) => (long)span.TotalSeconds;

    public void Dispose() => _meter.Dispose();
}
