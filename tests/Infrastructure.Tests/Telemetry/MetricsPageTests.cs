using System.Collections.Concurrent;
using System.Diagnostics;
using Propeller.Infrastructure.Telemetry;
using Propeller.Infrastructure.Tests.Support;

namespace Propeller.Infrastructure.Tests.Telemetry;

/// <summary>
/// GET /tasks/{id}/metrics and /proplets/{id}/metrics: the page's <c>total</c> is the exact count of the key's samples in
/// every case (spec §1.2 rows 10 and 16), but it is counted only when the page cannot tell it. Every call counted first,
/// and the dashboard's <c>limit=1</c> reads made that a heap scan of each proplet's week of samples. The statements sent
/// are seen through Npgsql's activities.
/// </summary>
public sealed class MetricsPageTests : IAsyncLifetime, IDisposable
{
    private readonly ConcurrentQueue<string> _statements = new();
    private readonly ActivityListener _listener;
    private TestDatabase _db = null!;
    private PostgresMetricsQueries _queries = null!;

    public MetricsPageTests()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name.StartsWith("Npgsql", StringComparison.Ordinal),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                var text = string.Join(" ", activity.TagObjects.Select(t => t.Value?.ToString()));
                if (text.Contains("metrics_page", StringComparison.Ordinal))
                {
                    _statements.Enqueue(text);
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("metrics_page");
        _queries = new PostgresMetricsQueries(_db.DataSource, _db.Options);

        // Five samples of proplet p (and task t), interleaved with another key's, a second apart.
        await _db.ExecuteAsync("""
            insert into {schema}.proplet_metrics (proplet_id, sampled_at, cpu, memory)
              select k, timestamptz '2026-01-01' + n * interval '1 second', jsonb_build_object('n', n), '{}'::jsonb
              from generate_series(1, 5) n, (values ('p'), ('other')) keys(k) order by n;
            insert into {schema}.task_metrics (task_id, proplet_id, sampled_at, metrics)
              select k, 'p', timestamptz '2026-01-01' + n * interval '1 second', jsonb_build_object('n', n)
              from generate_series(1, 5) n,
                   (values ('00000000-0000-0000-0000-000000000001'::uuid), ('00000000-0000-0000-0000-000000000002'::uuid)) keys(k)
              order by n;
            """);
    }

    public async ValueTask DisposeAsync() => await _db.DisposeAsync();

    public void Dispose() => _listener.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly Guid Task1 = Guid.Parse("00000000-0000-0000-0000-000000000001");

    [Theory]
    [InlineData(0, 10, new[] { 5, 4, 3, 2, 1 }, false)] // short first page: it is all there is
    [InlineData(0, 5, new[] { 5, 4, 3, 2, 1 }, true)] // full first page: more may follow
    [InlineData(0, 1, new[] { 5 }, true)] // the dashboard's read
    [InlineData(2, 2, new[] { 3, 2 }, true)] // full page further on
    [InlineData(4, 2, new[] { 1 }, false)] // short last page: offset + rows
    [InlineData(5, 2, new int[0], true)] // just past the end
    [InlineData(100, 2, new int[0], true)] // far past the end
    public async Task TheTotalIsTheCount_CountedOnlyWhenThePageCannotTellIt(long offset, int limit, int[] samples, bool counted)
    {
        _statements.Clear();
        var proplet = await _queries.PropletMetricsAsync("p", offset, limit, Ct);
        proplet.Total.ShouldBe(5);
        proplet.Items.Select(s => s.Cpu).ShouldBe(samples.Select(n => $$"""{"n": {{n}}}"""));
        proplet.Items.ShouldAllBe(s => s.PropletId == "p");
        Counts().ShouldBe(counted ? 1 : 0);

        _statements.Clear();
        var task = await _queries.TaskMetricsAsync(Task1, offset, limit, Ct);
        task.Total.ShouldBe(5);
        task.Items.Select(s => s.Metrics).ShouldBe(samples.Select(n => $$"""{"n": {{n}}}"""));
        task.Items.ShouldAllBe(s => s.TaskId == Task1);
        Counts().ShouldBe(counted ? 1 : 0);
    }

    [Fact]
    public async Task AKeyWithoutSamples_HasTotalZero_WithoutACountOnTheFirstPage()
    {
        _statements.Clear();
        var first = await _queries.PropletMetricsAsync("unknown", 0, 1, Ct);
        first.Total.ShouldBe(0);
        first.Items.ShouldBeEmpty();
        Counts().ShouldBe(0);

        var later = await _queries.TaskMetricsAsync(Guid.NewGuid(), 3, 1, Ct);
        later.Total.ShouldBe(0);
        later.Items.ShouldBeEmpty();
        Counts().ShouldBe(1);
    }

    /// <summary>Autovacuum visits these insert-only tables often enough to keep the count index-only.</summary>
    [Theory]
    [InlineData("proplet_metrics")]
    [InlineData("task_metrics")]
    public async Task TheMetricsTables_AreVacuumedAfterOnePercentInserted(string table) =>
        (await _db.ScalarAsync<string[]>($"select reloptions from pg_class where oid = '{{schema}}.{table}'::regclass"))
            .ShouldContain("autovacuum_vacuum_insert_scale_factor=0.01");

    private int Counts() => _statements.Count(s => s.Contains("count(*)", StringComparison.Ordinal));
}
