using System.Net.Http.Json;
using System.Text.Json;

namespace Propeller.Manager.Tests.Http;

public sealed class OpenApiTests
{
    [Fact]
    public async Task TheOpenApiDocument_DescribesEveryRoute()
    {
        await using var server = await ManagerServer.StartAsync("api_openapi");

        var document = await server.Client.GetFromJsonAsync<JsonElement>("/openapi/v1.json", TestContext.Current.CancellationToken);

        document.GetProperty("info").GetProperty("title").GetString().ShouldBe("Propeller manager API");
        var paths = document.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        paths.ShouldContain("/tasks");
        paths.ShouldContain("/tasks/{taskId}/start");
        paths.ShouldContain("/tasks/{taskId}/history");
        paths.ShouldContain("/tasks/{taskId}/metrics");
        paths.ShouldContain("/proplets/{propletId}/sdf");
        paths.ShouldContain("/health/ready");
        document.GetProperty("paths").GetProperty("/tasks/{taskId}/start").GetProperty("post").GetProperty("operationId").GetString().ShouldBe("start-task");
    }

    /// <summary>The handlers read their bodies and query strings themselves, so the document says what they take
    /// (ApiDocs): every operation a summary and its answers, the task bodies their schema, the query parameters named
    /// (ApiFuzzTests holds the answers to the document).</summary>
    [Fact]
    public async Task TheOpenApiDocument_NamesBodiesQueryParametersAndAnswers()
    {
        await using var server = await ManagerServer.StartAsync("api_openapi_detail");

        var document = await server.Client.GetFromJsonAsync<JsonElement>("/openapi/v1.json", TestContext.Current.CancellationToken);

        var paths = document.GetProperty("paths");
        foreach (var path in paths.EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                operation.Value.TryGetProperty("summary", out _).ShouldBeTrue($"{operation.Name} {path.Name} has no summary");
                operation.Value.GetProperty("responses").EnumerateObject().ShouldNotBeEmpty();
            }
        }

        foreach (var (path, method) in new[] { ("/tasks", "post"), ("/tasks/{taskId}", "put") })
        {
            var body = paths.GetProperty(path).GetProperty(method).GetProperty("requestBody").GetProperty("content").GetProperty("application/json").GetProperty("schema");
            body.GetProperty("properties").TryGetProperty("image_url", out _).ShouldBeTrue();
        }

        paths.GetProperty("/tasks/{taskId}/upload").GetProperty("put").GetProperty("requestBody").GetProperty("content").TryGetProperty("multipart/form-data", out _).ShouldBeTrue();
        var listParameters = paths.GetProperty("/tasks").GetProperty("get").GetProperty("parameters").EnumerateArray().Select(p => p.GetProperty("name").GetString()).ToList();
        listParameters.ShouldBe(["offset", "limit", "metadata", "state", "name", "proplet_id", "order"], ignoreOrder: true);
        var getParameters = paths.GetProperty("/tasks/{taskId}").GetProperty("get").GetProperty("parameters").EnumerateArray().Select(p => p.GetProperty("name").GetString()).ToList();
        getParameters.ShouldBe(["taskId", "version", "at", "wait"], ignoreOrder: true);
        var created = paths.GetProperty("/tasks").GetProperty("post").GetProperty("responses");
        created.TryGetProperty("201", out _).ShouldBeTrue();
        created.GetProperty("400").GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString().ShouldEndWith("ErrorJson");
    }
}
