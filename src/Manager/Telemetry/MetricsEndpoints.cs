using System.Text.Json;
using Propeller.Application.Proplets;
using Propeller.Application.Telemetry;
using Propeller.Manager.Http;

namespace Propeller.Manager.Telemetry;

/// <summary>GET /tasks/{id}/metrics and GET /proplets/{id}/metrics (spec §1.2 rows 10 and 16), newest first.</summary>
internal static class MetricsEndpoints
{
    public static IEndpointRouteBuilder MapMetricsEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/tasks/{taskId}/metrics", TaskMetricsAsync).WithName("get-task-metrics")
            .WithSummary("Get a task's metrics")
            .WithDescription("The samples the proplets reported for the task, newest first; an id that is not a UUID has none.")
            .Path("taskId", "The task's id.")
            .Paged("1 to 1000, default 100")
            .Produces<TaskMetricsPageJson>()
            .Refuses(400, 503);
        app.MapGet("/proplets/{propletId}/metrics", PropletMetricsAsync).WithName("get-proplet-metrics")
            .WithSummary("Get a proplet's metrics")
            .WithDescription("The proplet's CPU and memory samples, newest first.")
            .Path("propletId", "The proplet's id.")
            .Paged("1 to 1000, default 100")
            .Produces<PropletMetricsPageJson>()
            .Refuses(400, 404, 503);
        return app;
    }

    /// <summary>Any task id, as the original (spec §9.10): one that is not a UUID names no task, and has no samples.</summary>
    private static async Task<IResult> TaskMetricsAsync(string taskId, HttpRequest request, IMetricsQueries queries, CancellationToken cancellationToken)
    {
        if (Page(request) is not var (offset, limit))
        {
            return ApiResults.BadRequest("invalid offset/limit");
        }

        if (!Guid.TryParse(taskId, out var id))
        {
            return Results.Ok(new TaskMetricsPageJson(offset, limit, 0, []));
        }

        var page = await queries.TaskMetricsAsync(id, offset, limit, cancellationToken);
        var items = page.Items.Select(s => new TaskMetricsSampleJson(
            s.TaskId.ToString(), s.PropletId, Parse(s.Metrics), s.Aggregated is null ? null : Parse(s.Aggregated), s.Timestamp)).ToList();
        return Results.Ok(new TaskMetricsPageJson(offset, limit, page.Total, items));
    }

    /// <summary>Any proplet id: a proplet's id is its PROPLET_ENTITY_ID, any non-empty string (the original checks only
    /// that it is non-empty here, spec §1.1).</summary>
    private static async Task<IResult> PropletMetricsAsync(string propletId, HttpRequest request, IMetricsQueries queries, IPropletRegistry registry, CancellationToken cancellationToken)
    {
        if (Page(request) is not var (offset, limit))
        {
            return ApiResults.BadRequest("invalid offset/limit");
        }

        var id = Proplets.PropletEndpoints.FromRoute(propletId);
        var page = await queries.PropletMetricsAsync(id.Value, offset, limit, cancellationToken);
        if (page.Total == 0 && await registry.GetAsync(id, cancellationToken) is null)
        {
            return ApiResults.NotFound("proplet not found");
        }

        var items = page.Items.Select(s => new PropletMetricsSampleJson(s.PropletId, s.Namespace ?? "", s.Timestamp, Parse(s.Cpu), Parse(s.Memory))).ToList();
        return Results.Ok(new PropletMetricsPageJson(offset, limit, page.Total, items));
    }

    private static (long Offset, int Limit)? Page(HttpRequest request) =>
        Paging.TryRead(request, out var offset, out var limit) && offset <= long.MaxValue && limit is >= 1 and <= 1000
            ? ((long)offset, (int)limit)
            : null;

    private static JsonElement Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }
}
