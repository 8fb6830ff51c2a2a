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

    /// <summary>
    /// The fields written through a converter of ours (NullAsDefaultConverter, FlexStringsConverter, WireTimeConverter)
    /// have the schema of what they write: the generator cannot see through a custom converter and gave them an empty
    /// schema ({}, anything), so a client generated from the document typed state, the flags and every time as "any".
    /// </summary>
    [Fact]
    public async Task TheOpenApiDocument_GivesTheConvertedFieldsTheSchemaOfWhatTheyWrite()
    {
        await using var server = await ManagerServer.StartAsync("api_openapi_schemas");

        var text = await server.Client.GetStringAsync("/openapi/v1.json", TestContext.Current.CancellationToken);
        var schemas = JsonDocument.Parse(text).RootElement.GetProperty("components").GetProperty("schemas");

        var task = schemas.GetProperty("TaskJson").GetProperty("properties");
        static string? Type(JsonElement schema) => schema.TryGetProperty("type", out var type) ? (type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()).First(t => t != "null") : type.GetString()) : null;
        Type(task.GetProperty("state")).ShouldBe("integer");
        Type(task.GetProperty("priority")).ShouldBe("integer");
        Type(task.GetProperty("daemon")).ShouldBe("boolean");
        Type(task.GetProperty("inputs")).ShouldBe("array");
        foreach (var time in new[] { "start_time", "finish_time", "created_at", "updated_at", "next_run" })
        {
            Type(task.GetProperty(time)).ShouldBe("string", time);
            task.GetProperty(time).GetProperty("format").GetString().ShouldBe("date-time", time);
        }

        var sample = schemas.GetProperty("TaskMetricsSampleJson").GetProperty("properties").GetProperty("timestamp");
        (Type(sample), sample.GetProperty("format").GetString()).ShouldBe(("string", "date-time"));
        var lastEvent = schemas.GetProperty("TaskActivityJson").GetProperty("properties").GetProperty("last_event_at").GetProperty("type");
        lastEvent.EnumerateArray().Select(t => t.GetString()).ShouldBe(["null", "string"], ignoreOrder: true);
    }

    /// <summary>The answers every route may give are documented: 500 (a failure of ours) and, where a JSON body is read,
    /// 413 (over the 100 MiB limit); PUT says which fields it applies (the original's: spec §2.6), not the ones it ignores.</summary>
    [Fact]
    public async Task TheOpenApiDocument_Documents413And500_AndWhatAPutApplies()
    {
        await using var server = await ManagerServer.StartAsync("api_openapi_answers");

        var document = await server.Client.GetFromJsonAsync<JsonElement>("/openapi/v1.json", TestContext.Current.CancellationToken);

        var paths = document.GetProperty("paths");
        paths.GetProperty("/tasks").GetProperty("post").GetProperty("responses").TryGetProperty("413", out _).ShouldBeTrue();
        paths.GetProperty("/tasks/{taskId}").GetProperty("put").GetProperty("responses").TryGetProperty("413", out _).ShouldBeTrue();
        paths.GetProperty("/tasks").GetProperty("get").GetProperty("responses").TryGetProperty("500", out _).ShouldBeTrue();
        var put = paths.GetProperty("/tasks/{taskId}").GetProperty("put").GetProperty("description").GetString()!;
        put.ShouldContain("(image_url, cli_args, env, daemon, encrypted, monitoring_profile, proplet_id, state ...) is ignored");
    }
}
