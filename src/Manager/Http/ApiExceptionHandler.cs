using Microsoft.AspNetCore.Diagnostics;
using Propeller.Application.EventStore;
using Propeller.Contracts;

namespace Propeller.Manager.Http;

/// <summary>
/// The one place exceptions become responses (STYLE.md): a lost race that survived the command retries → 409,
/// store validation → 400, a malformed request → 400, a value PostgreSQL cannot store (a <c>\u0000</c>, a number out of
/// jsonb's range) → 400, PostgreSQL unavailable (unreachable, timed out, restarting) → 503 with <c>Retry-After</c>,
/// anything else → 500. Every 5xx is logged with its reason. Always <c>{"error"}</c>.
/// </summary>
internal sealed partial class ApiExceptionHandler(ILogger<ApiExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        var (status, message) = exception switch
        {
            ConcurrencyException e => (StatusCodes.Status409Conflict, e.Message),
            EventStoreValidationException e => (StatusCodes.Status400BadRequest, e.Message),
            BadHttpRequestException e => (e.StatusCode, e.Message),
            _ when Infrastructure.PostgresFailures.BadValue(exception) is { } bad => (StatusCodes.Status400BadRequest, $"a value cannot be stored: {bad.MessageText}"),
            _ when Infrastructure.PostgresFailures.IsUnavailable(exception) => (StatusCodes.Status503ServiceUnavailable, Unavailable),
            _ => (StatusCodes.Status500InternalServerError, "internal error"),
        };
        if (status == StatusCodes.Status503ServiceUnavailable)
        {
            LogUnavailable(logger, exception, httpContext.Request.Method, httpContext.Request.Path);
            httpContext.Response.Headers.RetryAfter = RetryAfterSeconds;
        }
        else if (status >= 500)
        {
            LogUnhandled(logger, exception, httpContext.Request.Method, httpContext.Request.Path);
        }

        httpContext.Response.StatusCode = status;
        await httpContext.Response.WriteAsJsonAsync(new ErrorJson(message), cancellationToken);
        return true;
    }

    /// <summary>The answer while PostgreSQL cannot be used (its address stays in the log, not in the answer).</summary>
    public const string Unavailable = "the event store (PostgreSQL) is unavailable; try again later";

    private const string RetryAfterSeconds = "5";

    [LoggerMessage(EventId = 4003, Level = LogLevel.Warning, Message = "{Method} {Path} answered 503: PostgreSQL is unavailable")]
    private static partial void LogUnavailable(ILogger logger, Exception exception, string method, string path);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Error, Message = "Unhandled error on {Method} {Path}")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string path);
}
