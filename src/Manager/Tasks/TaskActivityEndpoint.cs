using Marten;
using Propeller.Infrastructure.MartenStore;
using Propeller.Manager.Http;

namespace Propeller.Manager.Tasks;

/// <summary>
/// GET /tasks/activity: how many events of each type the task streams hold, from Marten's async task_activity
/// projection (it may lag the store by what /metrics shows as projection_lag_events).
/// </summary>
internal static class TaskActivityEndpoint
{
    public static IEndpointRouteBuilder MapTaskActivityEndpoint(this IEndpointRouteBuilder app)
    {
        app.MapGet("/tasks/activity", ActivityAsync).WithName("get-task-activity")
            .WithSummary("Get the tasks' activity")
            .WithDescription("How many events of each type the task streams hold, the newest's sequence and time (an async projection: it may lag).")
            .Produces<TaskActivityJson>()
            .Refuses(503);
        return app;
    }

    private static async Task<IResult> ActivityAsync(IDocumentStore store, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        var activity = await session.LoadAsync<TaskActivity>(TaskActivity.AllTasks, cancellationToken) ?? new TaskActivity();
        return Results.Ok(new TaskActivityJson(activity.Events, activity.LastSequence, activity.LastEventAt));
    }
}
