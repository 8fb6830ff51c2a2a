namespace Propeller.Manager.Http;

/// <summary>
/// The original's routes this manager does not offer yet (docs/compatibility.md: workflows, jobs, federated learning):
/// 501 with the original's error shape, so that a client of the original learns why instead of parsing an empty 404.
/// Left out of the OpenAPI document, which lists what is offered.
/// </summary>
internal static class UnbuiltEndpoints
{
    public static IResult NotImplemented(string what) => ApiResults.Error(StatusCodes.Status501NotImplemented, what);

    public static IEndpointRouteBuilder MapUnbuiltEndpoints(this IEndpointRouteBuilder app)
    {
        (string Method, string Route, string What)[] routes =
        [
            ("POST", "/workflows", "workflows are not implemented yet"),
            ("POST", "/jobs", "jobs are not implemented yet"),
            ("GET", "/jobs", "jobs are not implemented yet"),
            ("GET", "/jobs/{jobId}", "jobs are not implemented yet"),
            ("POST", "/jobs/{jobId}/start", "jobs are not implemented yet"),
            ("POST", "/jobs/{jobId}/stop", "jobs are not implemented yet"),
            ("POST", "/fl/experiments", "federated learning is not implemented yet"),
            ("GET", "/fl/task", "federated learning is not implemented yet"),
            ("POST", "/fl/update", "federated learning is not implemented yet"),
            ("POST", "/fl/update_cbor", "federated learning is not implemented yet"),
            ("GET", "/fl/rounds/{roundId}/complete", "federated learning is not implemented yet"),
        ];
        foreach (var (method, route, what) in routes)
        {
            app.MapMethods(route, [method], () => NotImplemented(what)).ExcludeFromDescription();
        }

        return app;
    }
}
