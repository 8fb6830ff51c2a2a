using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Propeller.Plugins.Tests.Support;

namespace Propeller.Manager.Tests.Plugins;

/// <summary>The seed's auth plugin (examples/plugins/plugin-auth), loaded by a real manager from MANAGER_PLUGIN_DIR.</summary>
public sealed class WasmPluginTests : IAsyncLifetime
{
    private readonly DirectoryInfo _plugins = Directory.CreateTempSubdirectory("manager-plugins");
    private ManagerServer _server = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    public async ValueTask InitializeAsync()
    {
        await File.WriteAllBytesAsync(Path.Combine(_plugins.FullName, "10-plugin-auth.wasm"), Examples.Get("plugin-auth"), Ct);
        _server = await ManagerServer.StartAsync("api_wasm_plugins", new Dictionary<string, string> { ["MANAGER_PLUGIN_DIR"] = _plugins.FullName });
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _plugins.Delete(recursive: true);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? body, string? user)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : new StringContent(body, Encoding.UTF8, "application/json") };
        if (user is not null)
        {
            request.Headers.Add("X-User-Id", user);
        }

        return await Http.SendAsync(request, Ct);
    }

    [Fact]
    public async Task TheAuthPlugin_RequiresAUser_RecordsTheCreator_AndOnlyTheCreatorMayStart()
    {
        var anonymous = await SendAsync(HttpMethod.Post, "/tasks", """{"name":"main"}""", user: null);
        anonymous.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await anonymous.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldNotBeNullOrEmpty();

        var created = await SendAsync(HttpMethod.Post, "/tasks", """{"name":"main"}""", "alice");
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var task = await created.Content.ReadFromJsonAsync<JsonElement>(Ct);
        var id = task.GetProperty("id").GetString();
        task.GetProperty("env").GetProperty("PROPELLER_CREATED_BY").GetString().ShouldBe("alice");

        (await SendAsync(HttpMethod.Post, $"/tasks/{id}/start", null, "mallory")).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await SendAsync(HttpMethod.Post, $"/tasks/{id}/start", null, "alice")).StatusCode.ShouldBe(HttpStatusCode.OK);

        var history = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct);
        var decisions = JsonDocument.Parse(history[0].GetProperty("headers").GetProperty("plugins").GetString()!).RootElement;
        decisions.EnumerateArray().Select(d => (d.GetProperty("plugin").GetString(), d.GetProperty("hook").GetString(), d.GetProperty("allow").GetBoolean()))
            .ShouldBe([("10-plugin-auth", "authorize", true), ("10-plugin-auth", "enrich_task", true)]);
        var listing = await Http.GetFromJsonAsync<JsonElement>("/plugins", Ct);
        listing.GetProperty("plugins")[0].GetProperty("name").GetString().ShouldBe("10-plugin-auth");
        (await Http.PostAsync("/plugins/reload", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var metrics = await Http.GetStringAsync("/metrics", Ct);
        metrics.ShouldContain("propeller_plugins_calls");
        metrics.ShouldContain("propeller_plugins_denies");
    }
}
