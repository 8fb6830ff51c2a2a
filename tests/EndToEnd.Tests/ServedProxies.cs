using System.Globalization;

namespace Propeller.EndToEnd.Tests;

/// <summary>An HTTP proxy component served through the manager, from its start to its stop (the port closed).</summary>
internal static class ServedProxies
{
    /// <summary>
    /// Starts the test proxy component on <paramref name="port"/>: the task is "started at port N" (completed, as the
    /// original reports it), the component answers a real request, and the API's stop interrupts the task and closes the
    /// port.
    /// </summary>
    public static async Task ServeUntilStoppedAsync(Cluster cluster, int port, CancellationToken ct)
    {
        var id = await cluster.CreateTaskAsync(
            new { name = "proxy", file = Convert.ToBase64String(Components.Proxy), cli_args = new[] { "--port", port.ToString(CultureInfo.InvariantCulture) } }, ct);
        await cluster.StartTaskAsync(id, ct);
        var task = await cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() is 3 or 4, ct);
        task.GetProperty("results").GetString().ShouldBe($"started at port {port}", task.GetRawText());
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        (await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/"), ct)).ShouldBe("hello, world");

        using var stop = await cluster.Http.PostAsync($"/tasks/{id}/stop", null, ct);
        stop.IsSuccessStatusCode.ShouldBeTrue(await stop.Content.ReadAsStringAsync(ct));
        await cluster.WaitForTaskAsync(id, t => t.GetProperty("state").GetInt32() == 6, ct);
        await cluster.WaitUntilAsync(
            "the port to close",
            async () =>
            {
                try
                {
                    await http.GetAsync(new Uri($"http://127.0.0.1:{port}/"), ct);
                    return false;
                }
                catch (HttpRequestException)
                {
                    return true;
                }
            },
            TimeSpan.FromSeconds(30),
            ct);
    }
}
