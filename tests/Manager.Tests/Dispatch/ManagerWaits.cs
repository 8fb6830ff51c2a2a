using System.Net.Http.Json;
using System.Text.Json;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>Polling the manager's API until something holds (the outage tests); a timeout names what was awaited and,
/// given <c>detail</c>, what the manager logged.</summary>
internal static class ManagerWaits
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task UntilAsync(Func<Task<bool>> condition, string what, TimeSpan? within = null, Func<string>? detail = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"not seen in time: {what}{(detail is null ? "" : "\n" + detail())}");
            }

            await Task.Delay(50, Ct);
        }
    }

    /// <summary>The task once it is in <paramref name="state"/> (within 60 s).</summary>
    public static async Task<JsonElement> ForStateAsync(HttpClient http, string id, int state, Func<string>? detail = null)
    {
        JsonElement task = default;
        await UntilAsync(
            async () => (task = await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32() == state,
            $"task {id} in state {state}", TimeSpan.FromSeconds(60), () => $"{task}{(detail is null ? "" : "\n" + detail())}");
        return task;
    }

    /// <summary>Until /health/ready answers 200 (within 60 s): PostgreSQL and the broker reachable again.</summary>
    public static Task ReadyAsync(HttpClient http, Func<string>? detail = null) =>
        UntilAsync(async () => (await http.GetAsync("/health/ready", Ct)).IsSuccessStatusCode, "the manager ready again", TimeSpan.FromSeconds(60), detail);

    /// <summary>Until the manager shows <paramref name="propletId"/> alive (registered and its heartbeat recorded).</summary>
    public static Task AliveAsync(HttpClient http, string propletId) =>
        UntilAsync(
            async () => await http.GetAsync($"/proplets/{propletId}", Ct) is { IsSuccessStatusCode: true } response
                && JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("alive").GetBoolean(),
            $"proplet {propletId} alive");
}
