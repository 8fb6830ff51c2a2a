using System.Net;
using System.Net.ServerSentEvents;
using System.Text;
using System.Text.Json;
using Propeller.Application.Aggregates;
using Microsoft.Extensions.DependencyInjection;

namespace Propeller.Manager.Tests.Events;

/// <summary>GET /events: committed task changes as server-sent events, filters, bad input, and the subscription's end.</summary>
public sealed class EventStreamTests : IAsyncLifetime
{
    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync("api_events");

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    private async Task<string> CreateAsync(string name)
    {
        var response = await Http.PostAsync("/tasks", new StringContent($$"""{"name":"{{name}}"}""", Encoding.UTF8, "application/json"), Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.Created);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>Opens the stream and reads up to its hello, so the subscription exists before the test acts.</summary>
    private async Task<(HttpResponseMessage Response, IAsyncEnumerator<SseItem<string>> Events)> OpenAsync(string query = "")
    {
        var response = await Http.GetAsync("/events" + query, HttpCompletionOption.ResponseHeadersRead, Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        response.Content.Headers.ContentType!.MediaType.ShouldBe("text/event-stream");
        var events = SseParser.Create(await response.Content.ReadAsStreamAsync(Ct)).EnumerateAsync(Ct).GetAsyncEnumerator(Ct);
        (await events.MoveNextAsync()).ShouldBeTrue();
        events.Current.EventType.ShouldBe("hello");
        return (response, events);
    }

    private static async Task<SseItem<string>> NextAsync(IAsyncEnumerator<SseItem<string>> events, string type = "task")
    {
        while (await events.MoveNextAsync())
        {
            if (events.Current.EventType == type)
            {
                return events.Current;
            }
        }

        throw new InvalidOperationException("the stream ended");
    }

    [Fact]
    public async Task GivenASubscriber_WhenATaskIsCreatedStartedStoppedAndDeleted_ThenEachCommitArrivesWithTheTask()
    {
        var (response, events) = await OpenAsync();
        using (response)
        {
            var id = await CreateAsync("watched");
            var created = JsonDocument.Parse((await NextAsync(events)).Data).RootElement;
            created.GetProperty("id").GetString().ShouldBe(id);
            created.GetProperty("version").GetInt64().ShouldBe(1);
            created.GetProperty("task").GetProperty("name").GetString().ShouldBe("watched");
            created.GetProperty("task").GetProperty("state").GetInt32().ShouldBe(0);

            (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
            var started = JsonDocument.Parse((await NextAsync(events)).Data).RootElement;
            started.GetProperty("version").GetInt64().ShouldBe(2);
            started.GetProperty("task").GetProperty("state").GetInt32().ShouldBe(1);

            (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
            JsonDocument.Parse((await NextAsync(events)).Data).RootElement.GetProperty("version").GetInt64().ShouldBe(3);
            (await Http.DeleteAsync($"/tasks/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
            var deleted = JsonDocument.Parse((await NextAsync(events)).Data).RootElement;
            deleted.GetProperty("deleted").GetBoolean().ShouldBeTrue();
            deleted.TryGetProperty("task", out _).ShouldBeFalse();
            await events.DisposeAsync();
        }
    }

    [Fact]
    public async Task GivenATaskFilter_WhenOtherTasksChange_ThenOnlyThatTaskArrives()
    {
        var mine = await CreateAsync("mine");
        var (response, events) = await OpenAsync($"?task={mine}");
        using (response)
        {
            await CreateAsync("other");
            (await Http.PostAsync($"/tasks/{mine}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

            var first = JsonDocument.Parse((await NextAsync(events)).Data).RootElement;
            first.GetProperty("id").GetString().ShouldBe(mine);
            first.GetProperty("version").GetInt64().ShouldBe(2);
            await events.DisposeAsync();
        }
    }

    [Fact]
    public async Task GivenBadFilters_ThenTheAnswerIs400WithAnErrorBody()
    {
        foreach (var query in new[] { "?task=nope", "?types=task,jobs", "?types=,", "?types=%20,%20," })
        {
            var response = await Http.GetAsync("/events" + query, Ct);
            response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
            JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString().ShouldNotBeNullOrEmpty();
        }
    }

    /// <summary>A change is handed to the live views in the task view's form: a large module as its reference. A stalled
    /// /events client holds up to 4096 changes, and each held the module (up to 4 MiB) before.</summary>
    [Fact]
    public async Task GivenATaskWithALargeModule_WhenItsChangeIsFed_ThenTheModuleIsItsReference()
    {
        using var subscription = _server.Services.GetRequiredService<StreamChanges>().Subscribe();
        var module = Convert.ToBase64String(new byte[100 * 1024]);
        var response = await Http.PostAsync("/tasks", new StringContent($$"""{"name":"large","file":"{{module}}"}""", Encoding.UTF8, "application/json"), Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.Created);

        var notice = await subscription.Reader.ReadAsync(Ct);

        var file = notice.State.ShouldBeOfType<Propeller.Domain.Tasks.TaskState>().Spec!.File;
        Propeller.Application.Tasks.ModuleReference.IsReference(file).ShouldBeTrue(file?[..Math.Min(file.Length, 40)]);
    }

    [Fact]
    public async Task GivenASubscriber_WhenItDisconnects_ThenItsSubscriptionEnds()
    {
        var changes = _server.Services.GetRequiredService<StreamChanges>();
        var (response, events) = await OpenAsync();
        changes.Subscribers.ShouldBe(1);

        await events.DisposeAsync();
        response.Dispose();
        await CreateAsync("after"); // the stream's loop sees the abort at its next wait at the latest
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (changes.Subscribers > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, Ct);
        }

        changes.Subscribers.ShouldBe(0);
    }
}
