using Npgsql;

namespace Propeller.Manager.Http;

/// <summary>GET /health (the original's HealthInfo), /health/live and /health/ready (PostgreSQL reachable).</summary>
internal static class HealthEndpoints
{
    public static IEndpointRouteBuilder MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health", (IConfiguration configuration) => Results.Ok(new
        {
            status = "pass",
            version = typeof(HealthEndpoints).Assembly.GetName().Version?.ToString() ?? "0.0.0",
            commit = "",
            description = "manager service",
            build_time = "",
            instance_id = configuration["MANAGER_ENTITY_ID"] ?? "",
        })).WithName("health");
        app.MapGet("/health/live", () => Results.Ok(new { status = "pass" })).WithName("health-live");
        app.MapGet("/health/ready", ReadyAsync).WithName("health-ready");
        return app;
    }

    private static async Task<IResult> ReadyAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        try
        {
            await using var command = dataSource.CreateCommand("select 1");
            await command.ExecuteScalarAsync(cancellationToken);
            return Results.Ok(new { status = "pass", checks = new { postgres = "pass" } });
        }
        catch (NpgsqlException ex)
        {
            return Results.Json(new { status = "fail", checks = new { postgres = ex.Message } }, statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }
}
