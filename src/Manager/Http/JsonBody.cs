using System.Text.Json;
using Propeller.Contracts.Json;

namespace Propeller.Manager.Http;

/// <summary>
/// Reads a JSON request body like the original: the Content-Type must contain application/json, and a body that does
/// not parse is a 400 naming the problem. Never throws for bad input.
/// </summary>
internal static class JsonBody
{
    public const string UnsupportedContentType = "unsupported content type";

    public static async Task<(T? Value, IResult? Error)> ReadAsync<T>(HttpRequest request, CancellationToken cancellationToken)
        where T : class
    {
        if (request.ContentType is not { } contentType || !contentType.Contains("application/json", StringComparison.OrdinalIgnoreCase))
        {
            return (null, ApiResults.BadRequest(UnsupportedContentType));
        }

        try
        {
            var value = await JsonSerializer.DeserializeAsync<T>(request.Body, JsonSerializerOptions.Web, cancellationToken);
            return value is null ? (null, ApiResults.BadRequest("request body is empty")) : (value, null);
        }
        catch (JsonException ex)
        {
            return (null, ApiResults.BadRequest($"invalid JSON body: {JsonProblem.Describe(ex, typeof(T), JsonSerializerOptions.Web)}"));
        }
    }
}
