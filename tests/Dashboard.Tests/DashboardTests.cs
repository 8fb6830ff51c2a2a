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

    /// <summary>A read of the task list (GET /tasks?...), not of one task or of the dashboard's files.</summary>
    private static bool IsTaskList(string url) => new Uri(url).AbsolutePath == "/tasks";

    private static string Json(object value) => Uri.EscapeDataString(JsonSerializer.Serialize(value));

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

    /// <summary>The timeline shows a task's last 100 events and reads earlier ones on demand (it read the whole history).</summary>
    [Fact]
    public async Task TheTimeline_ShowsTheLastEvents_AndEarlierOnDemand()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main" }, Ct);
        for (var i = 0; i < 104; i++)
        {
            using var updated = await cluster.Cluster.Http.PutAsJsonAsync($"/tasks/{id}", new { name = "main", inputs = new[] { i } }, Ct);
            updated.EnsureSuccessStatusCode();
        }

        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));

        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(100);
        await Assertions.Expect(_page.Locator("#timeline li").First).ToHaveAttributeAsync("data-version", "6");
        await _page.Locator("#earlier-events").ClickAsync();
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(105);
        await Assertions.Expect(_page.Locator("#timeline li").First).ToHaveAttributeAsync("data-version", "1");
        await Assertions.Expect(_page.Locator("#earlier-events")).ToHaveCountAsync(0);
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

    /// <summary>A reload whose plugin file is broken (half copied) keeps the plugin at its previous version: the page
    /// says so, with why, and the plugin stays listed.</summary>
    [Fact]
    public async Task APluginKeptByAReload_IsShownWithWhy()
    {
        var file = Path.Combine(cluster.PluginDirectory, "10-plugin-auth.wasm");
        var good = await File.ReadAllBytesAsync(file, Ct);
        try
        {
            await File.WriteAllBytesAsync(file, good[..(good.Length / 2)], Ct);
            await _page.GotoAsync(Ui(cluster.Guarded, "#/plugins"));
            await _page.Locator("#reload").ClickAsync();

            await Assertions.Expect(_page.Locator("#kept li[data-name='10-plugin-auth']")).ToContainTextAsync("10-plugin-auth.wasm");
            await Assertions.Expect(_page.Locator("tr[data-name='10-plugin-auth']")).ToBeVisibleAsync();
        }
        finally
        {
            await File.WriteAllBytesAsync(file, good, CancellationToken.None);
            (await cluster.Guarded.Http.PostAsync(new Uri("/plugins/reload", UriKind.Relative), null, CancellationToken.None)).EnsureSuccessStatusCode();
        }
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

    /// <summary>
    /// Task names and metadata are data: markup in them is shown as text and never runs, and the pages are served with a
    /// content security policy (no inline script, no framing by another site) and nosniff.
    /// </summary>
    [Fact]
    public async Task MarkupInATasksFields_IsShownAsText_AndThePagesForbidScriptsAndFraming()
    {
        const string Markup = "<img src=x onerror=\"window.__injected=1\"><script>window.__injected=2</script>";
        var name = Unique("markup") + Markup;
        var id = await cluster.Cluster.CreateTaskAsync(new { name, metadata = new { note = Markup } }, Ct);

        var page = await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks?name={Uri.EscapeDataString(name)}"));
        var headers = page.ShouldNotBeNull().Headers;
        headers["content-security-policy"].ShouldContain("frame-ancestors 'none'");
        headers["content-security-policy"].ShouldContain("default-src 'self'");
        headers["x-content-type-options"].ShouldBe("nosniff");
        await Assertions.Expect(_page.Locator($"tr[data-id='{id}']")).ToContainTextAsync(Markup);

        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("h1")).ToContainTextAsync(Markup);
        await Assertions.Expect(_page.Locator("main")).ToContainTextAsync("\"note\":\"<img src=x");
        (await _page.EvaluateAsync<bool>("() => window.__injected === undefined")).ShouldBeTrue();
        (await _page.Locator("main img, main script").CountAsync()).ShouldBe(0);
    }

    /// <summary>
    /// A page of another site cannot make the operator's browser start a task (ADR 0020): a page at http://localhost (the
    /// manager's /health, which has no content security policy, unlike the dashboard) is another site than the manager
    /// at 127.0.0.1, and Chromium's own no-cors POST from it, which needs no preflight, is refused; the same page's POST
    /// to its own origin starts the task.
    /// </summary>
    [Fact]
    public async Task APageOfAnotherSite_CannotStartATask_ThroughTheBrowser()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 1, 2 } }, Ct);
        var manager = cluster.Cluster.Http.BaseAddress!;
        manager.Host.ShouldBe("127.0.0.1");
        await _page.GotoAsync($"http://localhost:{manager.Port}/health");

        (await _page.EvaluateAsync<string>("url => fetch(url, { method: 'POST', mode: 'no-cors' }).then(r => r.type)", new Uri(manager, $"/tasks/{id}/start").ToString())).ShouldBe("opaque");
        (await cluster.Cluster.GetTaskAsync(id, Ct)).GetProperty("state").GetInt32().ShouldBe(0, "a cross-site POST changed the task");

        (await _page.EvaluateAsync<int>("url => fetch(url, { method: 'POST' }).then(r => r.status)", $"/tasks/{id}/start")).ShouldBe(200);
        await cluster.Cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 3, Ct);
        // The browser logs the refused request, and its request for /favicon.ico from /health's page.
        _errors.RemoveAll(e => e.Contains("403", StringComparison.Ordinal) || e.Contains("404", StringComparison.Ordinal));
    }

    /// <summary>
    /// A list reload still waiting for its answer when the user opens another page does not replace that page once
    /// the answer comes (the left view's fetch is aborted and it no longer draws).
    /// </summary>
    [Fact]
    public async Task AReloadStillInFlight_DoesNotOverwriteThePageTheUserWentTo()
    {
        var name = Unique("left");
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks?name={name}"));
        await Assertions.Expect(_page.Locator("p.empty")).ToBeVisibleAsync();
        var held = new TaskCompletionSource<IRoute>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _page.RouteAsync(IsTaskList, async route =>
        {
            if (!held.TrySetResult(route))
            {
                await route.ContinueAsync();
            }
        });
        await cluster.Cluster.CreateTaskAsync(new { name }, Ct); // a new task for the first page: the list reloads
        var reload = await held.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        await _page.Locator("nav a[data-nav='plugins']").ClickAsync();
        await Assertions.Expect(_page.Locator("#view h1")).ToHaveTextAsync("Plugins");
        try
        {
            await reload.ContinueAsync();
        }
        catch (PlaywrightException)
        {
            // the page aborted the request when the user left: nothing to answer
        }

        await Task.Delay(1000, Ct); // the answer, had it been awaited, would be drawn by now
        await Assertions.Expect(_page.Locator("#view h1")).ToHaveTextAsync("Plugins");
        await Assertions.Expect(_page.Locator("table.tasks")).ToHaveCountAsync(0);
    }

    /// <summary>A live reload of the list keeps what is being typed in the filter form, and its focus.</summary>
    [Fact]
    public async Task ALiveReload_KeepsTheFilterBeingTyped()
    {
        var name = Unique("typing");
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks?name={name}"));
        await Assertions.Expect(_page.Locator("p.empty")).ToBeVisibleAsync();
        var metadata = _page.Locator("input[name=metadata]");
        await metadata.ClickAsync();
        await _page.Keyboard.TypeAsync("{\"team\":");

        await cluster.Cluster.CreateTaskAsync(new { name }, Ct); // a new task for the first page: the list reloads

        await Assertions.Expect(_page.Locator("table.tasks tbody tr")).ToHaveCountAsync(1);
        await Assertions.Expect(metadata).ToHaveValueAsync("{\"team\":");
        await Assertions.Expect(metadata).ToBeFocusedAsync();
    }

    /// <summary>
    /// A task that completes while a list reload is in flight, whose answer was read before the completion, shows
    /// completed once the reload's rows replace the old ones (the events that came meanwhile are applied to them).
    /// </summary>
    [Fact]
    public async Task ATaskThatChangesDuringAReload_KeepsItsNewState()
    {
        var metadata = new { run = Unique("race") };
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 1, 1 }, metadata }, Ct);
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks?metadata={Json(metadata)}"));
        await Assertions.Expect(_page.Locator($"tr[data-id='{id}'] [data-state='pending']")).ToBeVisibleAsync();
        var held = new TaskCompletionSource<(IRoute Route, IAPIResponse Answer)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _page.RouteAsync(IsTaskList, async route =>
        {
            var answer = await route.FetchAsync(); // read now, answered later
            if (!held.TrySetResult((route, answer)))
            {
                await route.FulfillAsync(new() { Response = answer });
            }
        });
        await cluster.Cluster.CreateTaskAsync(new { name = "other", metadata }, Ct); // a new task for the first page: the list reloads
        var (reload, stale) = await held.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        await cluster.Cluster.StartTaskAsync(id, Ct);
        await Assertions.Expect(_page.Locator($"tr[data-id='{id}'] [data-state='completed']")).ToBeVisibleAsync(); // the old row
        await reload.FulfillAsync(new() { Response = stale }); // the reload's answer: the task still pending

        await Assertions.Expect(_page.Locator("table.tasks tbody tr")).ToHaveCountAsync(2);
        await Assertions.Expect(_page.Locator($"tr[data-id='{id}'] [data-state='completed']")).ToBeVisibleAsync();
    }

    /// <summary>
    /// On the task page, the reload after reconnecting whose answer was read before the task completed does not put
    /// the task back to that older state once the completion's event has been shown.
    /// </summary>
    [Fact]
    public async Task TheTaskPage_KeepsAChangeThatArrivedDuringItsReload()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 2, 3 } }, Ct);
        await _page.RouteAsync("**/events*", route => route.AbortAsync()); // the stream is down
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#outcome")).ToHaveTextAsync("No result yet.");
        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "down");
        var held = new TaskCompletionSource<(IRoute Route, IAPIResponse Answer)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _page.RouteAsync(url => new Uri(url).AbsolutePath == $"/tasks/{id}", async route =>
        {
            var answer = await route.FetchAsync(); // read now, answered later
            if (!held.TrySetResult((route, answer)))
            {
                await route.FulfillAsync(new() { Response = answer });
            }
        });

        await _page.UnrouteAsync("**/events*"); // reconnects, then reloads the task: that answer is held
        var (reload, stale) = await held.Task.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        await cluster.Cluster.StartTaskAsync(id, Ct);
        await Assertions.Expect(_page.Locator("#result")).ToHaveTextAsync("5"); // from the events
        await reload.FulfillAsync(new() { Response = stale }); // the task still pending
        await Task.Delay(1000, Ct); // the answer, had it been shown, would be on screen by now

        await Assertions.Expect(_page.Locator("#result")).ToHaveTextAsync("5");
        _errors.RemoveAll(e => e.Contains("ERR_FAILED", StringComparison.Ordinal)); // the browser logs the failed connections
    }

    /// <summary>
    /// A large fleet is shown a page of 50 at a time, and only the page's proplets have their metrics read (a fleet of
    /// thousands is not asked for thousands of metrics every 5 s); Next reads the following page.
    /// </summary>
    [Fact]
    public async Task AFleetOfManyProplets_IsPaged_AndOnlyThePagesMetricsAreRead()
    {
        var lists = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var metricReads = 0;
        await _page.RouteAsync(url => new Uri(url).AbsolutePath == "/proplets", async route =>
        {
            var query = System.Web.HttpUtility.ParseQueryString(new Uri(route.Request.Url).Query);
            lists.Enqueue(route.Request.Url);
            var offset = int.Parse(query["offset"] ?? "0", System.Globalization.CultureInfo.InvariantCulture);
            var limit = int.Parse(query["limit"] ?? "1000", System.Globalization.CultureInfo.InvariantCulture);
            var page = Enumerable.Range(offset, Math.Max(0, Math.Min(limit, 120 - offset)))
                .Select(i => new { id = $"p{i:D3}", name = $"proplet {i}", alive = true, task_count = 0, last_alive_at = DateTime.UtcNow })
                .ToList();
            await route.FulfillAsync(new() { Status = 200, ContentType = "application/json", Body = JsonSerializer.Serialize(new { offset, limit, total = 120, proplets = page }) });
        });
        await _page.RouteAsync(url => new Uri(url).AbsolutePath.EndsWith("/metrics", StringComparison.Ordinal), async route =>
        {
            Interlocked.Increment(ref metricReads);
            await route.FulfillAsync(new() { Status = 200, ContentType = "application/json", Body = """{"offset":0,"limit":1,"total":0,"metrics":[]}""" });
        });

        await _page.GotoAsync(Ui(cluster.Cluster, "#/proplets"));

        await Assertions.Expect(_page.Locator("table.proplets tbody tr")).ToHaveCountAsync(50);
        await Assertions.Expect(_page.Locator("#count")).ToHaveTextAsync("1–50 of 120 proplet(s)");
        Volatile.Read(ref metricReads).ShouldBeLessThanOrEqualTo(50 * lists.Count, "metrics read only for the proplets on the page");
        await _page.GetByRole(AriaRole.Button, new() { Name = "Next →" }).ClickAsync();
        await Assertions.Expect(_page.Locator("tr[data-id='p050']")).ToBeVisibleAsync();
        await Assertions.Expect(_page.Locator("#count")).ToHaveTextAsync("51–100 of 120 proplet(s)");
        lists.ShouldContain(u => u.Contains("offset=50", StringComparison.Ordinal));
    }

    /// <summary>
    /// The proplets page reads one snapshot at a time: periods that pass while a read is held start no other read,
    /// one more follows the held one, and its (newer) answer is what stays on screen.
    /// </summary>
    [Fact]
    public async Task TheProplets_AreReadOneAtATime_AndTheNewestReadStays()
    {
        await _page.Clock.InstallAsync();
        await _page.GotoAsync(Ui(cluster.Cluster, "#/proplets"));
        var row = _page.Locator($"tr[data-id='{cluster.PropletId}']");
        await Assertions.Expect(row).ToContainTextAsync("alive");
        var reads = 0;
        var held = new TaskCompletionSource<IRoute>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _page.RouteAsync(url => new Uri(url).AbsolutePath == "/proplets", async route =>
        {
            if (Interlocked.Increment(ref reads) > 1 || !held.TrySetResult(route))
            {
                await route.ContinueAsync();
            }
        });

        await _page.Clock.RunForAsync(5000); // the periodic re-read: held
        var first = await held.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        await _page.Clock.RunForAsync(10000); // two more periods while it is held
        await Task.Delay(500, Ct);
        Volatile.Read(ref reads).ShouldBe(1, "a read started while the previous one was still running");

        var older = await first.FetchAsync(); // an older snapshot, where the proplet was offline
        await first.FulfillAsync(new() { Status = 200, ContentType = "application/json", Body = (await older.TextAsync()).Replace("\"alive\":true", "\"alive\":false", StringComparison.Ordinal) });

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Volatile.Read(ref reads) < 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, Ct);
        }

        Volatile.Read(ref reads).ShouldBe(2, "one more read follows the held one"); // it starts once the held one is drawn
        await Assertions.Expect(row).ToContainTextAsync("alive");
    }

    /// <summary>
    /// A stream refused with a status (a proxy's 502 while the manager restarts), which the browser does not retry, is
    /// reopened by the page with backoff, and the page then reloads what changed meanwhile.
    /// </summary>
    [Fact]
    public async Task WhenTheStreamIsRefused_ThePageReconnects_AndCatchesUp()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main", file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 6, 7 } }, Ct);
        await _page.RouteAsync("**/events*", route => route.FulfillAsync(new() { Status = 502, ContentType = "text/plain", Body = "bad gateway" }));
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#outcome")).ToHaveTextAsync("No result yet.");
        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "down");

        await cluster.Cluster.StartTaskAsync(id, Ct); // completes while the stream is refused
        await cluster.Cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 3, Ct);
        await _page.UnrouteAsync("**/events*");

        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "up", new() { Timeout = 20000 });
        await Assertions.Expect(_page.Locator("#result")).ToHaveTextAsync("13");
        _errors.RemoveAll(e => e.Contains("502", StringComparison.Ordinal)); // the browser logs the refused connections
    }

    /// <summary>
    /// A page whose first load failed (the manager's 503 while it restarts) is not left blank: the reconnection's resync
    /// loads it again. It stayed blank, as only a view that had drawn once had a handler and a timer. The page's clock
    /// is paused, so the 5 s retry cannot load it instead (the test passed on that timer with the resync path broken).
    /// </summary>
    [Fact]
    public async Task APageWhoseFirstLoadFailed_IsLoadedAgain()
    {
        var now = DateTime.UtcNow;
        await _page.Clock.InstallAsync(new() { TimeDate = now });
        await _page.Clock.PauseAtAsync(now.AddSeconds(1)); // no page timer fires from here on
        await _page.RouteAsync("**/events*", route => route.AbortAsync()); // the stream is down
        var failed = 0;
        await _page.RouteAsync(url => new Uri(url).AbsolutePath == "/proplets", async route =>
        {
            if (Interlocked.Increment(ref failed) == 1)
            {
                await route.FulfillAsync(new() { Status = 503, ContentType = "application/json", Body = """{"error":"the event store is unavailable"}""" });
            }
            else
            {
                await route.ContinueAsync();
            }
        });
        await _page.GotoAsync(Ui(cluster.Cluster, "#/proplets"));
        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("the event store is unavailable");
        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "down");

        await _page.UnrouteAsync("**/events*"); // reconnects: resync

        await Assertions.Expect(_page.Locator($"tr[data-id='{cluster.PropletId}']")).ToBeVisibleAsync(new() { Timeout = 20000 });
        _errors.RemoveAll(e => e.Contains("503", StringComparison.Ordinal) || e.Contains("ERR_FAILED", StringComparison.Ordinal));
    }

    /// <summary>
    /// An id "." or ".." in the address is refused, not sent: as a path segment it was resolved away (#/proplets/..
    /// asked for the manager's root).
    /// </summary>
    [Theory]
    [InlineData("#/proplets/..")]
    [InlineData("#/proplets/.")]
    [InlineData("#/tasks/..")]
    public async Task ADotSegmentId_IsRefused_NotSent(string hash)
    {
        var sent = new System.Collections.Concurrent.ConcurrentQueue<string>();
        _page.Request += (_, request) => sent.Enqueue(new Uri(request.Url).AbsolutePath);
        await _page.GotoAsync(Ui(cluster.Cluster, hash));

        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("an id may not be \".\" or \"..\"");
        sent.ShouldNotContain("/");
    }

    /// <summary>An environment line without '=' is refused by the form (as the CLI does) instead of sent as KEY=.</summary>
    [Fact]
    public async Task AnEnvironmentLineWithoutEquals_IsRefused()
    {
        await _page.GotoAsync(Ui(cluster.Cluster, "#/new"));
        await _page.Locator("input[name=file]").SetInputFilesAsync(new FilePayload { Name = "add.wasm", MimeType = "application/wasm", Buffer = Wasm.Addition });
        await _page.Locator("textarea[name=env]").FillAsync("GOOD=1\nNOEQUALS");

        await _page.GetByRole(AriaRole.Button, new() { Name = "Create task" }).ClickAsync();

        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("\"NOEQUALS\" is not KEY=VALUE");
        _page.Url.ShouldEndWith("#/new");
    }

    /// <summary>A page past the end of the list says so (not "1001–1000"), and Previous goes back to the last page.</summary>
    [Fact]
    public async Task APagePastTheEnd_SaysSo_AndPreviousGoesToTheLastPage()
    {
        var name = Unique("paged");
        await cluster.Cluster.CreateTaskAsync(new { name }, Ct);
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks?name={name}&offset=1000"));
        await Assertions.Expect(_page.Locator("#count")).ToHaveTextAsync("none here (1 in all)");

        await _page.GetByRole(AriaRole.Button, new() { Name = "← Previous" }).ClickAsync();

        await Assertions.Expect(_page.Locator("#count")).ToHaveTextAsync("1–1 of 1");
    }

    /// <summary>Submitting the filter unchanged reloads the list (the hash does not change, so the router does not).</summary>
    [Fact]
    public async Task SubmittingTheSameFilter_ReloadsTheList()
    {
        var name = Unique("again");
        await _page.RouteAsync("**/events*", route => route.AbortAsync()); // no live feed: only the submit can reload
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks?name={name}"));
        await Assertions.Expect(_page.Locator("p.empty")).ToBeVisibleAsync();
        await cluster.Cluster.CreateTaskAsync(new { name }, Ct);

        await _page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();

        await Assertions.Expect(_page.Locator("table.tasks tbody tr")).ToHaveCountAsync(1);
        _errors.RemoveAll(e => e.Contains("ERR_FAILED", StringComparison.Ordinal)); // the browser logs the failed connections
    }

    /// <summary>A new version of a task (PUT /tasks/{id}): one more event in its history, and a task event.</summary>
    private async Task UpdateAsync(string id, int input)
    {
        using var updated = await cluster.Cluster.Http.PutAsJsonAsync($"/tasks/{id}", new { name = "main", inputs = new[] { input } }, Ct);
        updated.EnsureSuccessStatusCode();
    }

    /// <summary>
    /// A user name that is not printable ASCII is refused with a message and not kept, as the CLI's --user does: it is
    /// sent as the X-User-Id header, which the browser refuses above U+00FF (every call failed as "cannot reach the
    /// manager", also after a reload, since the name was kept) and the manager refuses past ASCII. A name kept before
    /// is ignored.
    /// </summary>
    [Fact]
    public async Task AUserNameThatIsNotAscii_IsRefused_AndTheCallsStillGoThrough()
    {
        var name = Unique("user");
        var id = await cluster.Cluster.CreateTaskAsync(new { name }, Ct);
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks?name={name}"));
        var row = _page.Locator($"tr[data-id='{id}']");
        await Assertions.Expect(row).ToBeVisibleAsync();

        await _page.Locator("#user").FillAsync("李");
        await _page.Locator("#user").DispatchEventAsync("change");

        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("user name");
        await Assertions.Expect(_page.Locator("#user")).ToHaveValueAsync("");
        await _page.ReloadAsync();
        await Assertions.Expect(row).ToBeVisibleAsync();
        await Assertions.Expect(_page.Locator("#message")).ToBeHiddenAsync();

        await _page.EvaluateAsync("() => localStorage.setItem('propeller.user', 'Zoë')"); // kept by an earlier dashboard
        await _page.ReloadAsync();
        await Assertions.Expect(row).ToBeVisibleAsync();
        await Assertions.Expect(_page.Locator("#user")).ToHaveValueAsync("");
        await Assertions.Expect(_page.Locator("#message")).ToBeHiddenAsync();
    }

    /// <summary>
    /// A filter the manager refuses is shown as a message and the filter form stays, with what was typed in it, to be
    /// corrected (the page was emptied, form and all).
    /// </summary>
    [Fact]
    public async Task AFilterTheManagerRefuses_IsShown_AndTheFormKeepsIt()
    {
        await _page.GotoAsync(Ui(cluster.Cluster, "#/tasks"));
        var metadata = _page.Locator("input[name=metadata]");
        await metadata.FillAsync("{team:edge}");

        await _page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();

        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("metadata must be a JSON object");
        await Assertions.Expect(metadata).ToHaveValueAsync("{team:edge}");
        await Assertions.Expect(_page.GetByRole(AriaRole.Button, new() { Name = "Filter" })).ToBeVisibleAsync();
        _errors.RemoveAll(e => e.Contains("400", StringComparison.Ordinal)); // the browser logs the refused read
    }

    /// <summary>
    /// The task page reads its history one read at a time: a read answered after a later event does not replace the
    /// timeline with an older one (two events 150 ms apart started two reads, and the one answered last was shown).
    /// </summary>
    [Fact]
    public async Task AHistoryReadAnsweredLate_DoesNotHideANewerEvent()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main" }, Ct);
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(1);
        var held = new TaskCompletionSource<(IRoute Route, IAPIResponse Answer)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _page.RouteAsync(url => new Uri(url).AbsolutePath == $"/tasks/{id}/history", async route =>
        {
            var answer = await route.FetchAsync(); // read now, answered later
            if (!held.TrySetResult((route, answer)))
            {
                await route.FulfillAsync(new() { Response = answer });
            }
        });

        await UpdateAsync(id, 1); // version 2: the page reads its history, and that answer is held
        var (first, stale) = await held.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        await UpdateAsync(id, 2); // version 3
        await Task.Delay(1000, Ct); // a second read, had it started beside the first, would be drawn by now
        await first.FulfillAsync(new() { Response = stale }); // versions 1 and 2
        await Task.Delay(1000, Ct);

        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(3);
        await Assertions.Expect(_page.Locator("#timeline li").Last).ToHaveAttributeAsync("data-version", "3");
    }

    /// <summary>Of two replays asked for in quick succession, the one asked for last stays, whichever is answered last.</summary>
    [Fact]
    public async Task TwoQuickReplays_ShowTheVersionAskedForLast()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main" }, Ct);
        await UpdateAsync(id, 1);
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(2);
        var held = new TaskCompletionSource<IRoute>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _page.RouteAsync(url => new Uri(url).Query == "?version=1", route =>
        {
            held.TrySetResult(route); // answered later
            return Task.CompletedTask;
        });

        await _page.Locator("#timeline li[data-version='1'] button").ClickAsync();
        var first = await held.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        await _page.Locator("#timeline li[data-version='2'] button").ClickAsync();
        var replay = _page.Locator("section.replay");
        await Assertions.Expect(replay).ToContainTextAsync("As it was at version 2");
        await first.ContinueAsync();
        await Task.Delay(1000, Ct); // the answer, had it been shown, would be on screen by now

        await Assertions.Expect(replay).ToContainTextAsync("As it was at version 2");
    }

    /// <summary>
    /// A task deleted elsewhere while its page is open says so until the user leaves the page (the message faded after
    /// 4 s), and Start, Stop and Delete are disabled (Start answered 404).
    /// </summary>
    [Fact]
    public async Task ATaskDeletedElsewhere_SaysSoUntilLeft_AndDisablesItsActions()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main" }, Ct);
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(1);

        using var deleted = await cluster.Cluster.Http.DeleteAsync($"/tasks/{id}", Ct);
        deleted.EnsureSuccessStatusCode();

        await Assertions.Expect(_page.Locator("#message")).ToContainTextAsync("This task was deleted");
        foreach (var action in new[] { "Start", "Stop", "Delete" })
        {
            await Assertions.Expect(_page.Locator(".actions button", new() { HasText = action })).ToBeDisabledAsync();
        }

        await Task.Delay(4500, Ct); // an information fades after 4 s
        await Assertions.Expect(_page.Locator("#message")).ToBeVisibleAsync();
    }

    /// <summary>Delete on the task page opens the list and says there that it is done (opening the list hid the message at once).</summary>
    [Fact]
    public async Task DeletingOnTheTaskPage_OpensTheList_AndSaysSoThere()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main" }, Ct);
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(1);
        await _page.EvaluateAsync("() => { window.confirm = () => true; }"); // answers "Delete this task?"

        await _page.Locator(".actions button", new() { HasText = "Delete" }).ClickAsync();

        await Assertions.Expect(_page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("#/tasks$"));
        await Assertions.Expect(_page.Locator("#message.info")).ToBeVisibleAsync();
        await Assertions.Expect(_page.Locator("#message.info")).ToContainTextAsync("Delete: done");
        using var gone = await cluster.Cluster.Http.GetAsync($"/tasks/{id}", Ct);
        gone.StatusCode.ShouldBe(System.Net.HttpStatusCode.NotFound);
    }

    /// <summary>A task list read (GET /tasks?...) counted as it goes through.</summary>
    private async Task<Func<int>> CountTaskListReadsAsync()
    {
        var reads = 0;
        await _page.RouteAsync(IsTaskList, async route =>
        {
            Interlocked.Increment(ref reads);
            await route.ContinueAsync();
        });
        return () => Volatile.Read(ref reads);
    }

    /// <summary>
    /// The changes of a task older than a full first page do not reload the list (the list is ordered by creation, so
    /// it cannot enter that page; with a few hundred tasks running every open list re-read 4 times a second), and a
    /// new task still appears.
    /// </summary>
    [Fact]
    public async Task ChangesOfATaskOlderThanAFullFirstPage_DoNotReloadTheList_ButANewTaskDoes()
    {
        var name = Unique("full");
        var ids = new List<string>();
        for (var i = 0; i < 60; i++)
        {
            ids.Add(await cluster.Cluster.CreateTaskAsync(new { name }, Ct));
        }

        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks?name={name}"));
        await Assertions.Expect(_page.Locator("table.tasks tbody tr")).ToHaveCountAsync(50);
        var reads = await CountTaskListReadsAsync();

        for (var i = 0; i < 10; i++)
        {
            using var updated = await cluster.Cluster.Http.PutAsJsonAsync($"/tasks/{ids[0]}", new { name, inputs = new[] { i } }, Ct);
            updated.EnsureSuccessStatusCode();
        }

        // The page's newest task, deleted after them: one stream brings the events in order, so once its row is
        // marked the page has had the ten changes.
        using var deleted = await cluster.Cluster.Http.DeleteAsync($"/tasks/{ids[^1]}", Ct);
        deleted.EnsureSuccessStatusCode();
        await Assertions.Expect(_page.Locator($"tr[data-id='{ids[^1]}']")).ToHaveClassAsync(new System.Text.RegularExpressions.Regex("deleted"));
        reads().ShouldBe(0, "a change of a task older than the full page reloaded the list");

        var added = await cluster.Cluster.CreateTaskAsync(new { name }, Ct);

        await Assertions.Expect(_page.Locator($"tr[data-id='{added}']")).ToBeVisibleAsync();
        reads().ShouldBe(1, "the list was reloaded for the changes of a task older than the page");
    }

    /// <summary>
    /// A list whose first read failed for a passing reason (a 503) while the stream stayed up is read again, and the
    /// error goes once it is shown: the view caught its own failure, so the router's retry never came and the list
    /// stayed empty on a quiet manager.
    /// </summary>
    [Fact]
    public async Task AListWhoseFirstReadFailed_IsReadAgain_AndTheErrorGoes()
    {
        var name = Unique("retried");
        var id = await cluster.Cluster.CreateTaskAsync(new { name }, Ct);
        await _page.Clock.InstallAsync();
        var reads = 0;
        await _page.RouteAsync(IsTaskList, async route =>
        {
            if (Interlocked.Increment(ref reads) == 1)
            {
                await route.FulfillAsync(new() { Status = 503, ContentType = "application/json", Body = """{"error":"the event store is unavailable"}""" });
            }
            else
            {
                await route.ContinueAsync();
            }
        });
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks?name={name}"));
        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("the event store is unavailable");

        await _page.Clock.RunForAsync(5000);

        await Assertions.Expect(_page.Locator($"tr[data-id='{id}']")).ToBeVisibleAsync();
        await Assertions.Expect(_page.Locator("#message")).ToBeHiddenAsync();
        _errors.RemoveAll(e => e.Contains("503", StringComparison.Ordinal));
    }

    /// <summary>
    /// A task deleted while the stream was down is shown as deleted after reconnecting, its actions disabled (the
    /// resync's 404 was shown as "task not found" with Start, Stop and Delete still enabled).
    /// </summary>
    [Fact]
    public async Task ATaskDeletedWhileTheStreamWasDown_SaysSoAfterReconnecting()
    {
        var id = await cluster.Cluster.CreateTaskAsync(new { name = "main" }, Ct);
        await _page.RouteAsync("**/events*", route => route.AbortAsync()); // the stream is down
        await _page.GotoAsync(Ui(cluster.Cluster, $"#/tasks/{id}"));
        await Assertions.Expect(_page.Locator("#timeline li")).ToHaveCountAsync(1);
        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "down");
        using var deleted = await cluster.Cluster.Http.DeleteAsync($"/tasks/{id}", Ct);
        deleted.EnsureSuccessStatusCode();

        await _page.UnrouteAsync("**/events*"); // reconnects: resync

        await Assertions.Expect(_page.Locator("#live")).ToHaveAttributeAsync("data-state", "up", new() { Timeout = 20000 });
        await Assertions.Expect(_page.Locator("#message")).ToContainTextAsync("This task was deleted");
        foreach (var action in new[] { "Start", "Stop", "Delete" })
        {
            await Assertions.Expect(_page.Locator(".actions button", new() { HasText = action })).ToBeDisabledAsync();
        }

        _errors.RemoveAll(e => e.Contains("ERR_FAILED", StringComparison.Ordinal) || e.Contains("404", StringComparison.Ordinal));
    }

    /// <summary>
    /// In a list filtered by state, a row whose task leaves the state is marked stale, and no longer once it is back
    /// (a completed task run again: it stayed marked).
    /// </summary>
    [Fact]
    public async Task ARowBackInTheFilteredState_IsNoLongerStale()
    {
        var name = Unique("stale");
        var again = await cluster.Cluster.CreateTaskAsync(new { name, file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 1, 2 } }, Ct);
        var marker = await cluster.Cluster.CreateTaskAsync(new { name, file = Convert.ToBase64String(Wasm.Addition), inputs = new[] { 3, 4 } }, Ct);
        foreach (var id in new[] { again, marker })
        {
            await cluster.Cluster.StartTaskAsync(id, Ct);
            await cluster.Cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 3, Ct);
        }

        var firstRun = (await cluster.Cluster.GetTaskAsync(again, Ct)).GetProperty("finish_time").GetString();
        await OpenLiveAsync(Ui(cluster.Cluster, $"#/tasks?state=completed&name={name}"));
        var row = _page.Locator($"tr[data-id='{again}']");
        await Assertions.Expect(row.Locator("[data-state='completed']")).ToBeVisibleAsync();

        await cluster.Cluster.StartTaskAsync(again, Ct); // scheduled, running (stale), completed
        await cluster.Cluster.WaitForTaskAsync(again, t => t.GetProperty("state").GetInt32() == 3 && t.GetProperty("finish_time").GetString() != firstRun, Ct);
        using var deleted = await cluster.Cluster.Http.DeleteAsync($"/tasks/{marker}", Ct);
        deleted.EnsureSuccessStatusCode();
        await Assertions.Expect(_page.Locator($"tr[data-id='{marker}']")).ToHaveClassAsync(new System.Text.RegularExpressions.Regex("deleted")); // the run's events came before

        await Assertions.Expect(row.Locator("[data-state='completed']")).ToBeVisibleAsync();
        await Assertions.Expect(row).Not.ToHaveClassAsync(new System.Text.RegularExpressions.Regex("stale"));
    }

    /// <summary>The error of a failed periodic re-read (a 503) goes when the next one succeeds (it stayed until the user left).</summary>
    [Fact]
    public async Task TheErrorOfAFailedReRead_GoesWhenTheNextSucceeds()
    {
        await _page.Clock.InstallAsync();
        await _page.GotoAsync(Ui(cluster.Cluster, "#/proplets"));
        var row = _page.Locator($"tr[data-id='{cluster.PropletId}']");
        await Assertions.Expect(row).ToContainTextAsync("alive");
        var reads = 0;
        await _page.RouteAsync(url => new Uri(url).AbsolutePath == "/proplets", async route =>
        {
            if (Interlocked.Increment(ref reads) == 1)
            {
                await route.FulfillAsync(new() { Status = 503, ContentType = "application/json", Body = """{"error":"the event store is unavailable"}""" });
            }
            else
            {
                await route.ContinueAsync();
            }
        });

        await _page.Clock.RunForAsync(5000); // the periodic re-read: 503
        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("the event store is unavailable");
        await _page.Clock.RunForAsync(5000); // the next one: 200

        await Assertions.Expect(_page.Locator("#message")).ToBeHiddenAsync();
        await Assertions.Expect(row).ToContainTextAsync("alive");
        _errors.RemoveAll(e => e.Contains("503", StringComparison.Ordinal));
    }

    /// <summary>
    /// An address whose id is not percent-encoded UTF-8 is no such page (decodeURIComponent's URIError was shown as
    /// "URI malformed" and retried every 5 s).
    /// </summary>
    [Fact]
    public async Task AMalformedAddress_IsNoSuchPage()
    {
        await _page.GotoAsync(Ui(cluster.Cluster, "#/tasks/%E0%A4%A"));

        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync("no such page: #/tasks/%E0%A4"); // the browser keeps the address as %E0%A4%25A
    }

    /// <summary>
    /// A file that is not a binary WebAssembly module (a .wat text, an archive named .wasm) is refused by the form
    /// before anything is sent (the task was created first, and the upload's refusal left it without a module).
    /// </summary>
    [Theory]
    [InlineData("add.wat", "(module (func (export \"main\")))", "its name must end in .wasm")]
    [InlineData("add.wasm", "PK\u0003\u0004 an archive", "this file starts with 50 4b 03 04")]
    public async Task AFileThatIsNotAWasmModule_IsRefusedBeforeATaskIsCreated(string file, string content, string why)
    {
        var sent = new System.Collections.Concurrent.ConcurrentQueue<string>();
        _page.Request += (_, request) =>
        {
            if (request.Method != "GET")
            {
                sent.Enqueue($"{request.Method} {new Uri(request.Url).AbsolutePath}");
            }
        };
        await _page.GotoAsync(Ui(cluster.Cluster, "#/new"));
        await _page.Locator("input[name=file]").SetInputFilesAsync(new FilePayload { Name = file, MimeType = "application/octet-stream", Buffer = System.Text.Encoding.Latin1.GetBytes(content) });

        await _page.GetByRole(AriaRole.Button, new() { Name = "Create task" }).ClickAsync();

        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync($"{file} is not a WebAssembly module");
        await Assertions.Expect(_page.Locator("#message.error")).ToContainTextAsync(why);
        _page.Url.ShouldEndWith("#/new");
        sent.ShouldBeEmpty();
    }
}
