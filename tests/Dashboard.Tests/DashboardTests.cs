using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;

namespace Propeller.Dashboard.Tests;

/// <summary>The dashboard under /ui in a real headless Chromium, against real managers and a real proplet.</summary>
[Collection("dashboard")]
public sealed class DashboardTests(DashboardCluster cluster) : IAsyncLifetime
{
    private readonly List<string> _errors = [];
    private IPage _page = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Ui(Cluster c, string hash = "") => new Uri(c.Http.BaseAddress!, "/ui/" + hash).ToString();

    public async ValueTask InitializeAsync() => _page = await cluster.Browser.NewPageAsync(_errors);

    public async ValueTask DisposeAsync()
    {
        await _page.CloseAsync();
        _errors.ShouldBeEmpty("the page logged errors");
    }

    private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    private async Task OpenLiveAsync(string url)
    {
        await _page.GotoAsync(url);
        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "up");
    }

    [Fact]
    public async Task TheTaskList_ShowsCreatedTasks_AndFiltersByName()
    {
        var name = Unique("listed");
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await cluster.Cluster.CreateTaskAsync(new { name = $"{name}-{i}" }, Ct));
        }

        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks?name={name}"));

        var rows = _page.Locator("table.tasks tbody tr");
        await Assertions.Expect(rows).ToHaveCountAsync(3);
        await Assertions.Expect(rows.First).ToContainTextAsync($"{name}-2"); // newest first
        await Assertions.Expect(_page.Locator("#count")).ToHaveTextAsync("1–3 of 3");
        foreach (var id in ids)
        {
            await Assertions.Expect(_page.Locator($"tr[data-id='{id}'] [data-state='pending']")).ToBeVisibleAsync();
        }
    }

    [Fact]
    public async Task AStartedTask_MovesToCompletedOnScreen_WithoutReload()
    {
        var name = Unique("live");
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 10, 32 }, metadata = new { run = name } }, Ct);
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks?metadata={Uri.EscapeDataString($$"""{"run":"{{name}}"}""")}"));
        await Assertions.Expect(_page.Locator($"tr[data-id='{id}'] [data-state='pending']")).ToBeVisibleAsync();

        await cluster.Cluster.StartTaskAsync(id, Ct);

        await Assertions.Expect(_page.Locator($"tr[data-id='{id}'] [data-state='completed']")).ToBeVisibleAsync();
        await _page.Locator($"tr[data-id='{id}'] a").First.ClickAsync();
        await Assertions.Expect(_page.Locator("#result")).ToHaveTextAsync("42");
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(4);
        await Assertions.Expect(_page.Locator("#timeline li[data-type='task.completed.v1']")).ToBeVisibleAsync();
        if (Environment.GetEnvironmentVariable("PROPELLER_SCREENSHOT_DIR") is { Length: > 0 } dir)
        {
            await _page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(dir, "dashboard-task.png"), FullPage = true });
        }
    }

    [Fact]
    public async Task TheTaskPage_ReplaysAnEarlierVersion()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 1, 2 } }, Ct);
        await cluster.Cluster.StartTaskAsync(id, Ct);
        await cluster.Cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 3, Ct);
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));

        await _page.Locator("#timeline li[data-version='1'] button").ClickAsync();

        var replay = _page.Locator("section.replay");
        await Assertions.Expect(replay).ToContainTextAsync("As it was at version 1");
        await Assertions.Expect(replay.Locator("[data-state='pending']")).ToBeVisibleAsync();
    }

    [Fact]
    public async Task TheTimeline_ShowsTheDecisionsOfTheDenyingPlugin_AndItsDenialIsAMessage()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/tasks") { Content = JsonContent.Create(new { name = "main" }) };
        request.Headers.Add("X-User-Id", "alice");
        using var created = await cluster.Guarded.Http.SendAsync(request, Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();
        await _page.GotoAsync(Ui(cluster.Guarded, $"#/tasks/{id}"));

        var created1 = _page.Locator("#timeline li[data-version='1']");
        await Assertions.Expect(created1).ToContainTextAsync("by alice");
        await Assertions.Expect(created1.Locator(".decision.allow")).ToHaveTextAsync(["10-plugin-auth: authorize allow", "10-plugin-auth: enrich_task allow"]);

        await _page.Locator("#user").FillAsync("mallory");
        await _page.Locator("#user").DispatchEventAsync("change");
        await _page.GetByRole(AriaRole.Button, new() { Name = "Start" }).ClickAsync();

        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("only the creator of the task may start it");
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(1);
        _errors.Remove("Failed to load resource: the server responded with a status of 403 (Forbidden)"); // the browser logs the refused call
    }

    [Fact]
    public async Task AnUpload_CreatesAndStartsATask()
    {
        await OpenLiveAsync(Ui(cluster.Cluster, "#/new"));
        await _page.Locator("input[name=file]").SetInputFilesAsync(new FilePayload { Name = "add.wasm", MimeType = "application/wasm", Buffer = Wasm.Addition });
        await _page.Locator("input[name=inputs]").FillAsync("20,22");

        await _page.GetByRole(AriaRole.Button, new() { Name = "Create task" }).ClickAsync();

        await Assertions.Expect(_page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("#/tasks/[0-9a-f-]{36}$"));
        await Assertions.Expect(_page.Locator("#result")).ToHaveTextAsync("42");
        var id = _page.Url[^36..];
        (await cluster.Cluster.GetTaskAsync(id, Ct)).GetProperty("file").GetString().ShouldNotBeNullOrEmpty();
    }

    [Fact]
    public async Task ProplestsAndPlugins_AreListed()
    {
        await _page.GotoAsync(Ui(cluster.Cluster, "#/proplets"));
        await Assertions.Expect(_page.Locator($"tr[data-id='{cluster.PropletId}']")).ToContainTextAsync("alive");

        await _page.GotoAsync(Ui(cluster.Guarded, "#/plugins"));
        await Assertions.Expect(_page.Locator("tr[data-name='10-plugin-auth']")).ToBeVisibleAsync();
        await _page.Locator("#reload").ClickAsync();
        await Assertions.Expect(_page.Locator("#message.info")).ToContainTextAsync("Plugins reloaded");
    }

    [Fact]
    public async Task WhenTheStreamDrops_ThePageSaysSo_AndCatchesUpAfterReconnecting()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 4, 5 } }, Ct);
        await _page.RouteAsync("**/events*", route => route.AbortAsync()); // every (re)connection of the stream fails
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#outcome")).ToHaveTextAsync("No result yet.");

        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "down");
        await Assertions.Expect(_page.Locator("#live")).ToContainTextAsync("reconnecting");
        await cluster.Cluster.StartTaskAsync(id, Ct); // completes while the stream is down: no event reaches the page
        await cluster.Cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 3, Ct);
        await _page.UnrouteAsync("**/events*");

        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "up", new() { Timeout = 20000 });
        await Assertions.Expect(_page.Locator("#result")).ToHaveTextAsync("9"); // reloaded on reconnection
        _errors.RemoveAll(e => e.Contains("ERR_FAILED", StringComparison.Ordinal)); // the browser logs the failed connections
    }

    [Fact]
    public async Task ApiErrors_AreShownAsMessages_NotABlankPage()
    {
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{Guid.NewGuid()}"));
        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("task not found");

        await _page.GotoAsync(Ui(cluster.Cluster, "#/tasks?metadata=not-json"));
        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("metadata must be a JSON object");
        await Assertions.Expect(_page.Locator("header nav")).ToBeVisibleAsync();
        _errors.RemoveAll(e => e.Contains("400", StringComparison.Ordinal) || e.Contains("404", StringComparison.Ordinal)); // the browser logs failed fetches
    }
}
