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
}
