using Propeller.Contracts;
using Propeller.Domain.Common;

namespace Propeller.Manager.Http;

/// <summary>Responses in the original's shapes: errors are <c>{"error": "..."}</c> with a status per kind.</summary>
internal static class ApiResults
{
    public static IResult Error(int status, string message) => Results.Json(new ErrorJson(message), statusCode: status);

    public static IResult BadRequest(string message) => Error(StatusCodes.Status400BadRequest, message);

    public static IResult NotFound(string message) => Error(StatusCodes.Status404NotFound, message);

    /// <summary>
    /// Rejections are expected outcomes: not found → 404, impossible in this state → 409, rule broken → 422. A not-found
    /// answer names what was not found only (<c>task not found</c>, <c>proplet not found</c>), as the routes that read do
    /// and as the original answers every unknown task (spec §9.8): the deciders' reasons name the id too
    /// (<c>task &lt;id&gt; not found</c>), which the command's outcome keeps.
    /// </summary>
    public static IResult From(Rejection rejection) => rejection.Kind switch
    {
        RejectionKind.NotFound => NotFound(NotFoundText(rejection.Reason)),
        RejectionKind.Conflict => Error(StatusCodes.Status409Conflict, rejection.Reason),
        _ => Error(StatusCodes.Status422UnprocessableEntity, rejection.Reason),
    };

    /// <summary>"task &lt;id&gt; not found" → "task not found"; any other reason as it is.</summary>
    private static string NotFoundText(string reason) =>
        reason.EndsWith(" not found", StringComparison.Ordinal) && reason.IndexOf(' ', StringComparison.Ordinal) is var space and > 0
            ? string.Concat(reason.AsSpan(0, space), " not found")
            : reason;
}
