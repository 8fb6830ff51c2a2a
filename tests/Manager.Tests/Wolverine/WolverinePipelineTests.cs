using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>The Wolverine write side (ADR 0014) beyond the contract suites: lost races decided again by the retry policy.</summary>
public sealed class WolverinePipelineTests : IAsyncLifetime
{
    private ManagerServer _server = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("wolverine_pipeline", null);

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    [Fact]
    public async Task ConcurrentUpdatesOfOneTask_AllSucceed_EachDecidedOnTheStateBeforeIt()
    {
        var created = await _server.Client.PostAsync("/tasks", new StringContent("""{"name":"race"}""", Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();

        // Twelve writers on one stream at once: the losers of each race get Marten's ConcurrencyException, which the
        // Wolverine policy answers by fetching and deciding again; none is lost and none answers 500.
        var answers = await Task.WhenAll(Enumerable.Range(0, 12).Select(i =>
            _server.Client.PutAsync($"/tasks/{id}", new StringContent($$"""{"name":"race-{{i}}"}""", Encoding.UTF8, "application/json"), Ct)));
        answers.Select(a => a.StatusCode).ShouldAllBe(s => s == HttpStatusCode.OK);

        var history = (await _server.Client.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().ToList();
        history.Count(e => e.GetProperty("type").GetString() == "task.updated.v1").ShouldBe(12);
        history.Select(e => e.GetProperty("version").GetInt64()).ShouldBe(Enumerable.Range(1, 13).Select(v => (long)v));
        var names = history.Skip(1).Select(e => e.GetProperty("data").GetProperty("spec").GetProperty("name").GetString()).ToHashSet();
        names.Count.ShouldBe(12);
        (await _server.Client.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("name").GetString().ShouldBe(history[^1].GetProperty("data").GetProperty("spec").GetProperty("name").GetString());
    }
}
