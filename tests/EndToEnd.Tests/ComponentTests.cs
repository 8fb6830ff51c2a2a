using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Propeller.EndToEnd.Tests;

/// <summary>Components through the manager and real proplet processes: a command, and a latent task invoked over HTTP.</summary>
[Collection("e2e")]
public sealed class ComponentTests(SharedCluster shared)
{
    private const int Completed = 3;
    private const int Failed = 4;

    private Cluster Cluster => shared.Cluster;

    [Fact]
    public async Task GivenACommandComponent_WhenRun_ThenItsStdoutIsTheResult()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(new { name = "_start", file = Convert.ToBase64String(Components.Command("hello from a component\n")) }, ct);
        await Cluster.StartTaskAsync(id, ct);

        var task = await Cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() is Completed or Failed, ct);

        task.GetProperty("results").GetString().ShouldBe("hello from a component\n", task.GetRawText());
    }

    /// <summary>
    /// An HTTP proxy component is served on its port ("started at port N": the task is completed, as the original
    /// reports it) until the task is stopped through the API, which closes the port (before, the manager refused to stop
    /// a completed task, and the component was served until its proplet ended).
    /// </summary>
    [Fact]
    public Task GivenAServedHttpProxyComponent_WhenTheTaskIsStopped_ThenItsPortCloses() =>
        ServedProxies.ServeUntilStoppedAsync(Cluster, Cluster.FreePort(), TestContext.Current.CancellationToken);

    [Fact]
    public async Task GivenALatentComponentTask_WhenInvoked_ThenTheResultComesBackAndTheInvocationIsInTheHistory()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(
            new { name = "add", file = Convert.ToBase64String(Components.Calculator), inputs = new[] { "1", "2" }, latent = true }, ct);
        await Cluster.StartTaskAsync(id, ct);

        // The proplet precompiles after the start; until then an invoke answers "has not been precompiled".
        JsonElement answer = default;
        await Cluster.WaitUntilAsync(
            $"invoke of {id}",
            async () =>
            {
                using var response = await Cluster.Http.PostAsJsonAsync($"/tasks/{id}/invoke", new { inputs = new[] { "40", "2" } }, ct);
                answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct)).RootElement.Clone();
                return response.StatusCode == HttpStatusCode.OK;
            },
            TimeSpan.FromSeconds(60),
            ct,
            () => answer.ValueKind == JsonValueKind.Undefined ? "" : answer.GetRawText());

        answer.GetRawText().ShouldBe("""{"invoked":true,"results":"42"}""");
        using (var stored = await Cluster.Http.PostAsync($"/tasks/{id}/invoke", null, ct))
        {
            (await stored.Content.ReadAsStringAsync(ct)).ShouldBe("""{"invoked":true,"results":"3"}""");
        }

        using (var bad = await Cluster.Http.PostAsJsonAsync($"/tasks/{id}/invoke", new { inputs = new[] { "x", "1" } }, ct))
        {
            bad.StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
            (await bad.Content.ReadAsStringAsync(ct)).ShouldContain("Failed to parse WAVE argument 'x' for export 'add'");
        }

        var history = (await Cluster.HistoryAsync(id, ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        history.ShouldContain("task.invoked.v1");
    }

    /// <summary>The component is padded past what the task view holds (ADR 0018): the redeploy puts its module back.</summary>
    [Fact]
    public async Task GivenABroadcastLatentTaskThatNoPropletHolds_WhenInvoked_ThenItIsDeployedEverywhereAndTheNextInvokeWorks()
    {
        var ct = TestContext.Current.CancellationToken;
        var file = Convert.ToBase64String(Components.Padded(Components.Calculator, 100_000));
        file.Length.ShouldBeGreaterThan(64 * 1024); // ModuleReference.InlineLimit
        var id = await Cluster.CreateTaskAsync(new { name = "add", file, inputs = new[] { "2", "3" }, latent = true, broadcast = true }, ct);

        // Never started: every alive proplet answers "has not been precompiled", so the manager deploys it to each.
        using (var first = await Cluster.Http.PostAsync($"/tasks/{id}/invoke", null, ct))
        {
            first.StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
            (await first.Content.ReadAsStringAsync(ct)).ShouldContain("has not been precompiled");
        }

        string? body = null;
        await Cluster.WaitUntilAsync(
            $"invoke of {id} after the redeploy",
            async () =>
            {
                using var response = await Cluster.Http.PostAsync($"/tasks/{id}/invoke", null, ct);
                body = await response.Content.ReadAsStringAsync(ct);
                return response.StatusCode == HttpStatusCode.OK;
            },
            TimeSpan.FromSeconds(60),
            ct,
            () => body ?? "");

        body.ShouldBe("""{"invoked":true,"results":"5"}""");
    }

    [Fact]
    public async Task GivenATaskThatIsNotLatent_WhenInvoked_ThenTheOriginalsErrorComesBack()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await Cluster.CreateTaskAsync(new { name = "main", file = Modules.AdditionBase64 }, ct);

        using var response = await Cluster.Http.PostAsync($"/tasks/{id}/invoke", null, ct);

        response.StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
        (await response.Content.ReadAsStringAsync(ct)).ShouldContain($"task {id} is not a latent task and cannot be invoked");
        using var unknown = await Cluster.Http.PostAsync($"/tasks/{Guid.NewGuid()}/invoke", null, ct);
        unknown.StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }
}
