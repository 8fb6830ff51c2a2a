using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Propeller.Manager.Http;

/// <summary>
/// The original's API metrics: <c>manager_api_request_count{method}</c> and
/// <c>manager_api_request_latency_microseconds{method}</c> (observed in seconds, as the original does), with the
/// endpoint's name (create-task, start-task, ...) as <c>method</c>.
/// </summary>
internal static class ApiMetrics
{
    private static readonly Counter<long> Requests = ManagerMeter.Meter.CreateCounter<long>("manager_api_request_count", description: "Number of API requests received");
    private static readonly Histogram<double> Latency = ManagerMeter.Meter.CreateHistogram<double>("manager_api_request_latency_microseconds", description: "Total duration of API requests");

    public static IApplicationBuilder UseApiMetrics(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            await next(context);
        }
        finally
        {
            var operation = context.GetEndpoint()?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName ?? "unmatched";
            var tag = new KeyValuePair<string, object?>("method", operation);
            Requests.Add(1, tag);
            Latency.Record(Stopwatch.GetElapsedTime(start).TotalSeconds, tag);
        }
    });
}
