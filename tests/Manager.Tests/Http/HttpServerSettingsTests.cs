using System.Net.Http.Json;
using System.Text.Json;

namespace Propeller.Manager.Tests.Http;

/// <summary>GET /health's instance_id, on the real host.</summary>
public sealed class HttpServerSettingsTests
{
    [Fact]
    public async Task GivenTheIdentityFromMANAGER_CLIENT_ID_WhenHealthIsRead_ThenInstanceIdIsThatIdentity()
    {
        await using var server = await ManagerServer.StartAsync(
            "api_health_identity", new Dictionary<string, string> { ["MANAGER_ENTITY_ID"] = "", ["MANAGER_CLIENT_ID"] = "manager-from-client-id" });

        var health = await server.Client.GetFromJsonAsync<JsonElement>("/health", TestContext.Current.CancellationToken);

        health.GetProperty("instance_id").GetString().ShouldBe("manager-from-client-id");
    }
}
