using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using FluentValidation;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.EventStore;
using Propeller.Contracts.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Manager.Tasks;
using Propeller.Manager.Wolverine;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>
/// The Wolverine write side (ADR 0014) beyond the contract suites: lost races decided again by the retry policy; batches
/// of API commands (ADR 0016) that refuse or fail one command without losing the others.
/// </summary>
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

    [Fact]
    public async Task ABatch_RefusesOnlyTheCommandThatFailsValidation_AndRejectsOnlyTheOneTheDeciderRejects()
    {
        var batcher = _server.Services.GetRequiredService<TaskCommandBatcher>();
        var (good, bad, missing) = (NewId(), NewId(), NewId());
        var outcomes = await batcher.RunTogetherAsync(
            [Create(good, new TaskJson { Name = "good" }), Create(bad, new TaskJson { Name = "" }), Command(new TaskCommand.StartTask(missing, DateTimeOffset.UtcNow, null))],
            Ct);

        (await outcomes[0]).Rejection.ShouldBeNull();
        (await Should.ThrowAsync<ValidationException>(outcomes[1])).Message.ShouldContain("missing identity name");
        (await outcomes[2]).Rejection.ShouldNotBeNull();
        (await _server.Client.GetAsync($"/tasks/{good}", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await _server.Client.GetAsync($"/tasks/{bad}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await _server.Client.GetAsync($"/tasks/{missing}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task ABatchThatCannotCommit_RunsEachCommandAlone_SoOnlyTheBadOneFails()
    {
        // A create for an id that already has a stream cannot commit in a batch (a batch starts new streams without
        // reading them); the batch fails, each command runs again alone, and only the duplicate is refused.
        var created = await _server.Client.PostAsync("/tasks", new StringContent("""{"name":"first"}""", Encoding.UTF8, "application/json"), Ct);
        var existing = new TaskId(Guid.Parse((await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!));
        var fresh = NewId();
        var batcher = _server.Services.GetRequiredService<TaskCommandBatcher>();
        var outcomes = await batcher.RunTogetherAsync([Create(existing, new TaskJson { Name = "second" }), Create(fresh, new TaskJson { Name = "fresh" })], Ct);

        (await outcomes[0]).Rejection.ShouldNotBeNull();
        (await outcomes[1]).Rejection.ShouldBeNull();
        (await _server.Client.GetFromJsonAsync<JsonElement>($"/tasks/{fresh}", Ct)).GetProperty("name").GetString().ShouldBe("fresh");
        var history = (await _server.Client.GetFromJsonAsync<JsonElement>($"/tasks/{existing}/history", Ct)).EnumerateArray().ToList();
        history.Count.ShouldBe(1);
        (await _server.Client.GetFromJsonAsync<JsonElement>($"/tasks/{existing}", Ct)).GetProperty("name").GetString().ShouldBe("first");
    }

    private static TaskId NewId() => new(Guid.CreateVersion7());

    private static RunTaskCommand Create(TaskId id, TaskJson body) =>
        new(id, new TaskCommand.CreateTask(id, TaskMapping.ToSpec(body), DateTimeOffset.UtcNow), EventMetadata.At(DateTimeOffset.UtcNow), body);

    private static RunTaskCommand Command(TaskCommand command) => new(command.TaskId, command, EventMetadata.At(DateTimeOffset.UtcNow));
}
