using System.Net;
using System.Net.ServerSentEvents;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Manager.Events;

namespace Propeller.Manager.Tests.Events;

/// <summary>
/// GET /events past MANAGER_EVENTS_MAX_STREAMS (lowered to 1 here; 256 by default): each stream may hold up to 64 MiB
/// for a reader that stopped reading, so a node serves a bounded number. One more is answered 503 with the reason and
/// Retry-After, and a place comes free when a stream ends. Before, streams were not limited.
/// </summary>
public sealed class EventStreamLimitTests : IAsyncLifetime
{
    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_limit", new Dictionary<string, string> { ["MANAGER_EVENTS_MAX_STREAMS"] = "1" });

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAsManyStreamsAsAllowed_WhenOneMoreIsAsked_Then503UntilOneEnds()
    {
        var readers = _server.Services.GetRequiredService<EventReaders>();
        using (var first = await OpenAsync())
        {
            first.StatusCode.ShouldBe(HttpStatusCode.OK);
            await using var events = await first.Content.ReadAsStreamAsync(Ct);
            await using var items = SseParser.Create(events).EnumerateAsync(Ct).GetAsyncEnumerator(Ct);
            (await items.MoveNextAsync()).ShouldBeTrue();
            items.Current.EventType.ShouldBe("hello");

            using var refused = await OpenAsync();
            refused.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable);
            refused.Headers.RetryAfter.ShouldNotBeNull();
            var body = JsonDocument.Parse(await refused.Content.ReadAsStringAsync(Ct)).RootElement;
            body.GetProperty("error").GetString()!.ShouldContain("MANAGER_EVENTS_MAX_STREAMS");
            readers.Open.ShouldBe(1, "a refused request takes no place");
        }

        // The first stream's end reaches the server when it sees the client gone: its place is given back then.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (readers.Open > 0)
        {
            await Task.Delay(20, deadline.Token);
        }

        using var again = await OpenAsync();
        again.StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    private Task<HttpResponseMessage> OpenAsync() =>
        _server.Client.GetAsync("/events", HttpCompletionOption.ResponseHeadersRead, Ct);
}
