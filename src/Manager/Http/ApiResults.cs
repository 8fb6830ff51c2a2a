using Propeller.Contracts;
using Propeller.Domain.Common;

namespace Propeller.Manager.Http;

/// <summary>Responses in the original's shapes: errors are <c>{"error": "..."}</c> with a status per kind.</summary>
internal static class ApiResults
{
    public static IResult Error(int status, string message) => Results.Json(new ErrorJson(message), statusCode: status);

    public static IResult BadRequest(string message) => Error(StatusCodes.Status400BadRequest, message);

    public static IResult NotFound(string message) => Error(StatusCodes.Status404NotFound, message);

    /// <summary>Rejections are expected outcomes: not found → 404, impossible in this state → 409, rule broken → 422.</summary>
    public static IResult From(Rejection rejection) => rejection.Kind switch
    {
        RejectionKind.NotFound => NotFound(rejection.Reason),
        RejectionKind.Conflict => Error(StatusCodes.Status409Conflict, rejection.Reason),
        _ => Error(StatusCodes.Status422UnprocessableEntity, rejection.Reason),
    };
}
