using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Propeller.Manager.Http;

namespace Propeller.Manager.Tests.Http;

/// <summary>
/// A browser's cross-origin request that changes something is refused (403 {"error"}) and changes nothing, so a page of
/// another site cannot start, stop or delete tasks or reload plugins through an operator's browser; the dashboard's
/// own requests, reads from anywhere, trusted origins and clients that are not browsers pass.
/// </summary>
public sealed class CrossOriginProtectionTests
{
    private const string AddWasm = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAPageOfAnotherSite_WhenItStartsOrDeletesATask_ThenItIsRefusedAndTheTaskIsUntouched()
    {
        await using var server = await ManagerServer.StartAsync("api_cross_origin", new Dictionary<string, string> { ["MANAGER_HTTP_TRUSTED_ORIGINS"] = "https://ops.example.com" });
        var http = server.Client;
        var own = http.BaseAddress!.GetLeftPart(UriPartial.Authority);
        using var created = await http.PostAsync("/tasks", new StringContent($$"""{"name":"main","file":"{{AddWasm}}","inputs":[1,2]}""", System.Text.Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var id = JsonDocument.Parse(await created.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString();

        // A form post from another site (Chromium sends Sec-Fetch-Site: cross-site), one from a browser that sends only
        // Origin, a sibling site, a sandboxed page ("null"): refused, and the task is still pending.
        foreach (var (origin, site) in new[] { ("https://evil.example", "cross-site"), ("https://evil.example", null), ("https://x." + http.BaseAddress!.Host, "same-site"), ("null", null) })
        {
            using var start = Send(HttpMethod.Post, $"/tasks/{id}/start", origin, site);
            using var refused = await http.SendAsync(start, Ct);
            refused.StatusCode.ShouldBe(HttpStatusCode.Forbidden, $"{origin} {site}");
            JsonDocument.Parse(await refused.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString()
                .ShouldStartWith("cross-origin request refused");
        }

        using (var delete = Send(HttpMethod.Delete, $"/tasks/{id}", "https://evil.example", "cross-site"))
        {
            (await http.SendAsync(delete, Ct)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        }

        using (var reload = Send(HttpMethod.Post, "/plugins/reload", "https://evil.example", "cross-site"))
        {
            (await http.SendAsync(reload, Ct)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        }

        // Reads pass from anywhere (the browser's CORS rules keep their answers from another site's page).
        using (var read = Send(HttpMethod.Get, $"/tasks/{id}", "https://evil.example", "cross-site"))
        {
            using var answer = await http.SendAsync(read, Ct);
            answer.StatusCode.ShouldBe(HttpStatusCode.OK);
            JsonDocument.Parse(await answer.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("state").GetInt32().ShouldBe(0);
        }

        server.Warnings.ToString().ShouldContain("Refused a cross-origin POST /plugins/reload from a browser (Origin 'https://evil.example', Sec-Fetch-Site 'cross-site')");

        // The dashboard's own requests, the manager's own origin, a trusted origin, a typed address (none), a client
        // that is no browser: each passes.
        foreach (var (origin, site) in new[] { (own, "same-origin"), (own, null), ("https://ops.example.com", "cross-site"), (null, "none"), (null, null) })
        {
            using var stop = Send(HttpMethod.Post, $"/tasks/{id}/stop", origin, site);
            var answer = await http.SendAsync(stop, Ct);
            answer.StatusCode.ShouldNotBe(HttpStatusCode.Forbidden, $"{origin} {site}");
        }

        // A trusted origin's pages may also send JSON and read the answers (CORS); another site's preflight is not
        // granted, so its browser sends nothing.
        foreach (var (origin, granted) in new[] { ("https://ops.example.com", true), ("https://evil.example", false) })
        {
            using var preflight = Send(HttpMethod.Options, "/tasks", origin, "cross-site");
            preflight.Headers.TryAddWithoutValidation("Access-Control-Request-Method", "POST");
            preflight.Headers.TryAddWithoutValidation("Access-Control-Request-Headers", "content-type,x-user-id");
            using var answer = await http.SendAsync(preflight, Ct);
            answer.Headers.TryGetValues("Access-Control-Allow-Origin", out var allowed).ShouldBe(granted, origin);
            if (granted)
            {
                allowed.ShouldNotBeNull().ShouldBe([origin]);
            }
        }

        using var fromTrusted = Send(HttpMethod.Post, "/tasks", "https://ops.example.com", "cross-site");
        fromTrusted.Content = new StringContent("""{"name":"from-the-ops-page"}""", System.Text.Encoding.UTF8, "application/json");
        using var createdThere = await http.SendAsync(fromTrusted, Ct);
        createdThere.StatusCode.ShouldBe(HttpStatusCode.Created);
        createdThere.Headers.GetValues("Access-Control-Allow-Origin").ShouldBe(["https://ops.example.com"]);
        createdThere.Headers.GetValues("Access-Control-Expose-Headers").ShouldContain(h => h.Contains("Location", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task GivenAPageWhoseNameIsReboundToTheManager_WhenItReadsOrWrites_ThenAnUnknownHostIsRefused()
    {
        await using var server = await ManagerServer.StartAsync("api_dns_rebinding", new Dictionary<string, string> { ["MANAGER_HTTP_ALLOWED_HOSTS"] = "manager.example.com" });
        var http = server.Client;
        var port = http.BaseAddress!.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

        // http://evil.example:7070 rebound to the manager's address: its own requests are same-origin to the browser.
        foreach (var (method, path) in new[] { (HttpMethod.Post, "/plugins/reload"), (HttpMethod.Get, "/tasks") })
        {
            using var rebound = Send(method, path, "http://evil.example:" + port, "same-origin");
            rebound.Headers.Host = "evil.example:" + port;
            using var refused = await http.SendAsync(rebound, Ct);
            refused.StatusCode.ShouldBe(HttpStatusCode.Forbidden, $"{method} {path}");
            JsonDocument.Parse(await refused.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString()
                .ShouldBe("cross-origin request refused: host 'evil.example:" + port + "' is not allowed (MANAGER_HTTP_ALLOWED_HOSTS lists the names the manager is reached by)");
        }

        // A read by a browser that sends Sec-Fetch-Site only (a same-origin GET has no Origin).
        using (var read = Send(HttpMethod.Get, "/tasks", null, "same-origin"))
        {
            read.Headers.Host = "evil.example:" + port;
            (await http.SendAsync(read, Ct)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        }

        server.Warnings.ToString().ShouldContain("Refused a browser's GET /tasks to host 'evil.example:" + port + "'");

        // Over plain HTTP a browser's same-origin read carries neither header (no Fetch Metadata to an origin that is not
        // trustworthy, no Origin on a same-origin GET): with MANAGER_HTTP_ALLOWED_HOSTS set every request's Host counts.
        using (var plain = new HttpRequestMessage(HttpMethod.Get, "/tasks"))
        {
            plain.Headers.Host = "evil.example:" + port;
            (await http.SendAsync(plain, Ct)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        }

        // Known names (an allowed one, localhost, an IP address) pass, for a browser and for any other client.
        foreach (var (host, browser) in new[] { ("manager.example.com", true), ("MANAGER.example.com.", true), ("localhost", true), ("127.0.0.1", true), ("[::1]", true), ("manager.example.com", false), ("127.0.0.1", false) })
        {
            foreach (var (method, path) in new[] { (HttpMethod.Post, "/plugins/reload"), (HttpMethod.Get, "/tasks") })
            {
                using var request = Send(method, path, browser ? $"http://{host}:{port}" : null, browser ? "same-origin" : null);
                request.Headers.Host = $"{host}:{port}";
                using var answer = await http.SendAsync(request, Ct);
                answer.StatusCode.ShouldNotBe(HttpStatusCode.Forbidden, $"{host} {method} {path}");
            }
        }
    }

    /// <summary>Without MANAGER_HTTP_ALLOWED_HOSTS a client that is no browser passes whatever its Host (curl by any name).</summary>
    [Fact]
    public async Task GivenNoAllowedHostsSet_WhenAClientThatIsNoBrowserNamesAnyHost_ThenItPasses()
    {
        await using var server = await ManagerServer.StartAsync("api_dns_rebinding_lax");
        using var request = new HttpRequestMessage(HttpMethod.Get, "/tasks");
        request.Headers.Host = "manager.internal.example";
        (await server.Client.SendAsync(request, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Theory]
    [InlineData("POST", null, null, true)]
    [InlineData("GET", "https://evil.example", "cross-site", true)]
    [InlineData("HEAD", "https://evil.example", "cross-site", true)]
    [InlineData("OPTIONS", "https://evil.example", "cross-site", true)]
    [InlineData("POST", "https://evil.example", "cross-site", false)]
    [InlineData("PUT", "https://evil.example", "cross-site", false)]
    [InlineData("PATCH", "https://evil.example", null, false)]
    [InlineData("DELETE", null, "same-site", false)]
    [InlineData("POST", null, "cross-site", false)]
    [InlineData("POST", "http://manager:7070", "same-origin", true)]
    [InlineData("POST", null, "none", true)]
    [InlineData("POST", "http://manager:7070", null, true)]
    [InlineData("POST", "http://MANAGER:7070", null, true)]
    [InlineData("POST", "http://manager:7071", null, false)]
    [InlineData("POST", "http://manager", null, false)]
    [InlineData("POST", "null", null, false)]
    [InlineData("POST", "not an origin", null, false)]
    [InlineData("POST", "https://ops.example.com", "cross-site", true)]
    public void TheFetchMetadataCheck_IsGosCrossOriginProtection(string method, string? origin, string? site, bool allowed)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = method;
        context.Request.Host = new HostString("manager:7070");
        if (origin is not null)
        {
            context.Request.Headers.Origin = origin;
        }

        if (site is not null)
        {
            context.Request.Headers["Sec-Fetch-Site"] = site;
        }

        CrossOriginProtection.Allows(context.Request, new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "https://ops.example.com" }).ShouldBe(allowed);
    }

    private static HttpRequestMessage Send(HttpMethod method, string path, string? origin, string? site)
    {
        var request = new HttpRequestMessage(method, path);
        if (origin is not null)
        {
            request.Headers.TryAddWithoutValidation("Origin", origin);
        }

        if (site is not null)
        {
            request.Headers.TryAddWithoutValidation("Sec-Fetch-Site", site);
        }

        return request;
    }
}
