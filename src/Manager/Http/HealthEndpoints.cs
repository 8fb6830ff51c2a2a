using Marten.Exceptions;
using Npgsql;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Mqtt;
using Propeller.Manager.Configuration;

namespace Propeller.Manager.Http;

/// <summary>GET /health (the original's HealthInfo), /health/live and /health/ready (PostgreSQL reachable, broker connected, async projections running and caught up).</summary>
internal static partial class HealthEndpoints
{
    public static IEndpointRouteBuilder MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        // instance_id is the identity in use (MANAGER_ENTITY_ID, MANAGER_CLIENT_ID, config.toml or manager-<host>), not the
        // raw variable, which is empty whenever the identity came from elsewhere.
        app.MapGet("/health", (ManagerConfig config) => Results.Ok(new HealthJson(
            Status: "pass",
            Version: typeof(HealthEndpoints).Assembly.GetName().Version?.ToString() ?? "0.0.0",
            Commit: "",
            Description: "manager service",
            BuildTime: "",
            InstanceId: config.EntityId))).WithName("health").WithSummary("Health and version (the original's)").Produces<HealthJson>();
        app.MapGet("/health/live", () => Results.Ok(new LiveJson("pass"))).WithName("health-live")
            .WithSummary("Liveness").WithDescription("200 while the process serves requests.").Produces<LiveJson>();
        app.MapGet("/health/ready", ReadyAsync).WithName("health-ready")
            .WithSummary("Readiness")
            .WithDescription("200 when PostgreSQL answers, the broker connection (when configured) is up and subscribed and the async projections run and are caught up; otherwise 503 naming the failed check.")
            .Produces<ReadyJson>()
            .Produces<ReadyJson>(StatusCodes.Status503ServiceUnavailable);
        return app;
    }

    /// <summary>What a failed check answers: the driver's text names the database's address (host:port) and is logged instead
    /// (docs/compatibility.md: the database's address is kept out of answers).</summary>
    internal const string CheckFailed = "failed (the reason is logged)";

    /// <summary>Ready = PostgreSQL answers and, when a broker is configured, the manager is connected and subscribed.</summary>
    private static async Task<IResult> ReadyAsync(NpgsqlDataSource dataSource, IServiceProvider services, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        string postgres;
        try
        {
            await using var command = dataSource.CreateCommand("select 1");
            await command.ExecuteScalarAsync(cancellationToken);
            postgres = "pass";
        }
        catch (Exception ex) when (IsCheckFailure(ex, cancellationToken))
        {
            LogCheckFailed(loggers.CreateLogger(typeof(HealthEndpoints).FullName!), ex, "postgres");
            postgres = CheckFailed;
        }

        var mqtt = services.GetService<ManagerMqtt>() is { } bridge ? (bridge.IsReady ? "pass" : bridge.RefusedSubscription is { } refused ? $"the broker refuses the subscription to {refused}" : "not connected to the broker") : "not configured";

        // On Marten: every async projection runs in this host's daemon and is at most MANAGER_PROJECTION_MAX_LAG
        // events behind (ADR 0010).
        var projections = "not configured";
        if (postgres == "pass" && services.GetService<MartenProjectionMonitor>() is { } monitor)
        {
            try
            {
                projections = await monitor.CheckAsync(cancellationToken) ?? "pass";
            }
            catch (Exception ex) when (IsCheckFailure(ex, cancellationToken))
            {
                LogCheckFailed(loggers.CreateLogger(typeof(HealthEndpoints).FullName!), ex, "projections");
                projections = CheckFailed;
            }
        }

        var ready = postgres == "pass" && mqtt is "pass" or "not configured" && projections is "pass" or "not configured";
        return Results.Json(
            new ReadyJson(ready ? "pass" : "fail", new ReadyChecksJson(postgres, mqtt, projections)), statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    /// <summary>
    /// A failed check (503 naming it), not a bug: PostgreSQL's errors as Npgsql throws them or as Marten wraps them
    /// (MartenCommandException and the like), and timeouts; but not the request's own cancellation (the client left).
    /// </summary>
    private static bool IsCheckFailure(Exception ex, CancellationToken requestAborted) => ex switch
    {
        OperationCanceledException => !requestAborted.IsCancellationRequested,
        NpgsqlException or MartenException or TimeoutException => true,
        _ => ex.InnerException is NpgsqlException or TimeoutException,
    };

    [LoggerMessage(EventId = 4007, Level = LogLevel.Warning, Message = "/health/ready: the {Check} check failed")]
    private static partial void LogCheckFailed(ILogger logger, Exception exception, string check);
}
