using System.Diagnostics;
using System.Net;
using System.Net.ServerSentEvents;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Propeller.Manager.Tests.Events;

/// <summary>GET /events and a long poll while the host stops: they end and do not hold up the graceful shutdown.</summary>
public sealed class EventStreamShutdownTests : IAsyncLifetime
{
    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_shutdown", services: s => s.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60)));

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAnOpenStream_WhenTheHostStops_ThenTheStreamEndsAndShutdownDoesNotWaitForTheTimeout()
    {
        using var response = await _server.Client.GetAsync("/events", HttpCompletionOption.ResponseHeadersRead, Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var events = SseParser.Create(await response.Content.ReadAsStreamAsync(Ct)).EnumerateAsync(Ct).GetAsyncEnumerator(Ct);
        (await events.MoveNextAsync()).ShouldBeTrue();
        events.Current.EventType.ShouldBe("hello");

        var clock = Stopwatch.StartNew();
        await _server.StopAsync();
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10)); // against a 60 s shutdown timeout

        // The response ended cleanly: the client reads the end of the stream, not an error.
        var rest = new List<string>();
        while (await events.MoveNextAsync())
        {
            rest.Add(events.Current.EventType);
        }

        rest.ShouldNotContain("hello");
        await events.DisposeAsync();
    }

    /// <summary>A long poll (<c>?wait=</c>) in flight when the host stops is answered with the task as it is, and does
    /// not hold up the graceful shutdown (it did, for up to its 60 s).</summary>
    [Fact]
    public async Task GivenALongPoll_WhenTheHostStops_ThenItIsAnsweredAndShutdownDoesNotWaitForIt()
    {
        var created = await _server.Client.PostAsync("/tasks", new StringContent("""{"name":"waits"}""", System.Text.Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var id = System.Text.Json.JsonDocument.Parse(await created.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString();
        var watched = _server.Services.GetRequiredService<Propeller.Application.Aggregates.StreamChanges>();
        var before = watched.WatchedStreams;
        var waiting = _server.Client.GetAsync($"/tasks/{id}?wait=60s", Ct);

        // The wait has begun (it watches the task's stream): a request Kestrel has not yet taken when the host stops
        // would be refused, not answered.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (watched.WatchedStreams <= before)
        {
            waiting.IsCompleted.ShouldBeFalse("the long poll was answered before the host stopped");
            DateTime.UtcNow.ShouldBeLessThan(deadline, "the long poll never began to wait");
            await Task.Delay(10, Ct);
        }

        var clock = Stopwatch.StartNew();
        await _server.StopAsync();
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10)); // against a 60 s wait and shutdown timeout

        using var answer = await waiting;
        answer.StatusCode.ShouldBe(HttpStatusCode.OK);
        System.Text.Json.JsonDocument.Parse(await answer.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString().ShouldBe(id);
    }
}
