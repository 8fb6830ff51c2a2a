using System.Globalization;
using Propeller.Application.Aggregates;
using Propeller.Application.Proplets;
using Propeller.Contracts.Proplets;
using Propeller.Domain.Proplets;
using Propeller.Manager.Configuration;
using Propeller.Manager.Http;
using Propeller.Manager.Wolverine;
using Wolverine;
using static Propeller.Domain.Proplets.PropletCommand;

namespace Propeller.Manager.Proplets;

/// <summary>The proplet routes of the original (spec §1.2 rows 12–15, 17; metrics, row 16, in MetricsEndpoints).</summary>
internal static class PropletEndpoints
{
    public static IEndpointRouteBuilder MapPropletEndpoints(this IEndpointRouteBuilder app)
    {
        const string Id = "The proplet's id (its PROPLET_ENTITY_ID).";
        app.MapGet("/proplets", ListAsync).WithName("list-proplets")
            .WithSummary("List proplets")
            .WithDescription("One page of the proplets the manager knows, with whether each is alive (a heartbeat within the liveness window).")
            .Paged()
            .Query("status", "active (alive) or inactive; all when absent.")
            .Produces<PropletPageJson>()
            .Refuses(400, 503);
        app.MapGet("/proplets/{propletId}", GetAsync).WithName("get-proplet")
            .WithSummary("Get a proplet")
            .Path("propletId", Id)
            .Produces<PropletJson>()
            .Refuses(404, 503);
        app.MapDelete("/proplets/{propletId}", DeleteAsync).WithName("delete-proplet")
            .WithSummary("Delete a proplet")
            .WithDescription("Forgets a proplet; 409 while tasks run on it (as the original, an alive proplet may be deleted: its next discovery or heartbeat registers it again).")
            .Path("propletId", Id)
            .Produces(StatusCodes.Status204NoContent)
            .Refuses(403, 404, 409, 422, 503);
        app.MapGet("/proplets/{propletId}/alive-history", AliveHistoryAsync).WithName("get-proplet-alive-history")
            .WithSummary("Get a proplet's heartbeat times")
            .Path("propletId", Id)
            .Paged()
            .Produces<AliveHistoryPageJson>()
            .Refuses(400, 404, 503);
        app.MapGet("/proplets/{propletId}/sdf", SdfAsync).WithName("get-proplet-sdf")
            .WithSummary("Get a proplet's SDF description")
            .WithDescription("The proplet as a Semantic Definition Format document (as the original).")
            .Path("propletId", Id)
            .Produces<System.Text.Json.JsonElement>()
            .Refuses(404, 503);
        return app;
    }

    private static async Task<IResult> ListAsync(HttpRequest request, IPropletRegistry registry, ManagerConfig options, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!Paging.TryRead(request, out var offset, out var limit))
        {
            return ApiResults.BadRequest("invalid offset/limit");
        }

        var status = request.Query["status"].FirstOrDefault();
        if (status is not (null or "" or "active" or "inactive"))
        {
            return ApiResults.BadRequest("status must be active or inactive");
        }

        var now = time.GetUtcNow();
        var all = (await registry.ListAsync(cancellationToken))
            .Where(p => status switch { "active" => p.IsAlive(now, options.LivenessWindow), "inactive" => !p.IsAlive(now, options.LivenessWindow), _ => true })
            .ToList();
        var page = all.Skip((int)Math.Min(offset, int.MaxValue)).Take((int)Math.Min(limit, int.MaxValue)).Select(p => ToJson(p, now, options)).ToList();
        return Results.Ok(new PropletPageJson((long)offset, (long)limit, all.Count, page));
    }

    /// <summary>The proplet id a route names: ASP.NET leaves an encoded "/" (%2F) encoded in a route value (every other
    /// escape is decoded), so an id holding "/" (any PROPLET_ENTITY_ID is taken) was not found by its encoded form. An id
    /// holding the text "%2F" itself cannot be told from it (its "%" arrives decoded as well).</summary>
    internal static PropletId FromRoute(string propletId) => new(propletId.Replace("%2F", "/", StringComparison.OrdinalIgnoreCase));

    private static async Task<IResult> GetAsync(string propletId, IPropletRegistry registry, ManagerConfig options, TimeProvider time, CancellationToken cancellationToken)
    {
        return await registry.GetAsync(FromRoute(propletId), cancellationToken) is { } view
            ? Results.Ok(ToJson(view, time.GetUtcNow(), options))
            : ApiResults.NotFound("proplet not found");
    }

    private static async Task<IResult> DeleteAsync(string propletId, HttpRequest request, IPropletRegistry registry, IMessageBus bus, TimeProvider time, CancellationToken cancellationToken)
    {
        var id = FromRoute(propletId);
        var view = await registry.GetAsync(id, cancellationToken);
        var command = new DeleteProplet(id, view?.RunningTasks ?? 0, time.GetUtcNow());
        var result = await bus.InvokeAsync<CommandResult<PropletEvent, PropletState>>(
            RunPropletCommand.For(command, WolverineTaskCommands.Metadata(request, command.At)), cancellationToken);
        return result.Rejection switch
        {
            { Kind: Domain.Common.RejectionKind.Conflict } conflict => ApiResults.Error(StatusCodes.Status409Conflict, $"conflict: {conflict.Reason}"),
            { } rejection => ApiResults.From(rejection),
            _ => Results.NoContent(),
        };
    }

    private static async Task<IResult> AliveHistoryAsync(string propletId, HttpRequest request, IPropletRegistry registry, CancellationToken cancellationToken)
    {
        if (!Paging.TryRead(request, out var offset, out var limit))
        {
            return ApiResults.BadRequest("invalid offset/limit");
        }

        if (await registry.GetAsync(FromRoute(propletId), cancellationToken) is not { } view)
        {
            return ApiResults.NotFound("proplet not found");
        }

        var history = view.AliveHistory.Skip((int)Math.Min(offset, int.MaxValue)).Take((int)Math.Min(limit, int.MaxValue))
            .Select(t => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture)).ToList();
        return Results.Ok(new AliveHistoryPageJson((long)offset, (long)limit, view.AliveHistory.Count, history));
    }

    private static async Task<IResult> SdfAsync(string propletId, IPropletRegistry registry, CancellationToken cancellationToken)
    {
        return await registry.GetAsync(FromRoute(propletId), cancellationToken) is { } view
            ? Results.Ok(SdfDocument.For(view.Id.Value, view.Name))
            : ApiResults.NotFound("proplet not found");
    }

    private static PropletJson ToJson(PropletView view, DateTimeOffset now, ManagerConfig options) => new(
        view.Id.Value,
        view.Name,
        view.RunningTasks,
        view.IsAlive(now, options.LivenessWindow),
        view.LastAliveAt ?? default,
        new PropletMetadataJson
        {
            Description = Empty(view.Metadata.Description),
            Tags = view.Metadata.Tags.Count == 0 ? null : [.. view.Metadata.Tags],
            Location = Empty(view.Metadata.Location),
            Ip = Empty(view.Metadata.Ip),
            Environment = Empty(view.Metadata.Environment),
            Os = Empty(view.Metadata.Os),
            Hostname = Empty(view.Metadata.Hostname),
            CpuArch = Empty(view.Metadata.CpuArch),
            TotalMemoryBytes = view.Metadata.TotalMemoryBytes,
            PropletVersion = Empty(view.Metadata.PropletVersion),
            WasmRuntime = Empty(view.Metadata.WasmRuntime),
        });

    private static string? Empty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
