using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Propeller.Application.Tasks;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>A module larger than the task view keeps (ADR 0018): held once by its own document, in every start message whole.</summary>
public partial class DispatchTests
{
    [Fact]
    public async Task GivenATaskWithALargeModule_WhenItRunsIsUpdatedAndRunsAgain_ThenEveryStartCarriesTheModuleAndTheViewOnlyItsReference()
    {
        var propletId = Guid.NewGuid().ToString();
        var files = new ConcurrentQueue<string?>();
        await using var proplet = await StartPropletAsync(propletId, start =>
        {
            files.Enqueue(start.TryGetProperty("file", out var file) ? file.GetString() : null);
            return "ok";
        });
        await WaitForAliveAsync(propletId);
        var module = Convert.ToBase64String(RandomNumberGenerator.GetBytes(100_000));
        module.Length.ShouldBeGreaterThan(ModuleReference.InlineLimit);
        var shown = module[..10] + "<REDACTED>" + module[^10..];

        var id = await CreateAndStartAsync($$"""{"name":"big","file":"{{module}}"}""");

        (await WaitForStateAsync(id, 3)).GetProperty("file").GetString().ShouldBe(shown);
        files.ShouldHaveSingleItem().ShouldBe(module);
        (await ScalarAsync<int>($"select length(data::text) from {{schema}}.mt_doc_taskstate where id = '{id}'")).ShouldBeLessThan(4096, "the view holds the module's reference");
        (await ScalarAsync<string>($"select data->>'file' from {{schema}}.mt_doc_taskmodule where id = '{id}'")).ShouldBe(module);

        // An update that leaves the module records its reference, not a second copy; the next start carries it whole.
        (await Http.PutAsync($"/tasks/{id}", new StringContent("""{"name":"renamed"}""", Encoding.UTF8, "application/json"), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await ScalarAsync<int>($"select max(length(data::text)) from {{schema}}.mt_events where stream_id = '{id}' and type = 'task.updated.v1'")).ShouldBeLessThan(4096);
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        await WaitUntilAsync(() => files.Count == 2);
        files.Last().ShouldBe(module);

        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("name").GetString().ShouldBe("renamed");
        task.GetProperty("file").GetString().ShouldBe(shown);
        var history = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().ToList();
        history.Where(e => e.GetProperty("type").GetString() is "task.created.v1" or "task.updated.v1")
            .Select(e => e.GetProperty("data").GetProperty("spec").GetProperty("file").GetString()).ShouldAllBe(f => f == shown);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?version=1", Ct)).GetProperty("file").GetString().ShouldBe(shown);

        // A small module replaces it in the view; the task's module document goes.
        (await Http.PutAsync($"/tasks/{id}", new StringContent("""{"file":"AGFzbQEAAAA="}""", Encoding.UTF8, "application/json"), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await ScalarAsync<long>($"select count(*) from {{schema}}.mt_doc_taskmodule where id = '{id}'")).ShouldBe(0);
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        await WaitUntilAsync(() => files.Count == 3);
        files.Last().ShouldBe("AGFzbQEAAAA=");
    }

    [Fact]
    public async Task GivenATaskWithALargeModule_WhenItIsDeleted_ThenItsModuleDocumentGoes()
    {
        var module = Convert.ToBase64String(RandomNumberGenerator.GetBytes(60_000));
        var created = await Http.PostAsync("/tasks", new StringContent($$"""{"name":"big","file":"{{module}}"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await ScalarAsync<long>($"select count(*) from {{schema}}.mt_doc_taskmodule where id = '{id}'")).ShouldBe(1);

        (await Http.DeleteAsync($"/tasks/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);

        (await ScalarAsync<long>($"select count(*) from {{schema}}.mt_doc_taskmodule where id = '{id}'")).ShouldBe(0);
    }

    /// <summary>
    /// A start sent with a large module by reference, handled after an update gave the task a small module (which deleted
    /// the module's document): it can never be published as dispatched, so its run fails at once with the reason, as a
    /// too-large start's does. It was retried four times, then a dead letter, and the task stayed Running on a proplet
    /// that never got it. (The start is sent here as the dispatch sent it, after the update: the window between the
    /// dispatch's commit and the publish is too short to hit from outside.)
    /// </summary>
    [Fact]
    public async Task GivenAStartWithALargeModule_WhenAnUpdateReplacesTheModuleBeforeItIsPublished_ThenTheRunFails()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => throw new InvalidOperationException("a proplet that never answers"));
        await WaitForAliveAsync(propletId);
        var module = Convert.ToBase64String(RandomNumberGenerator.GetBytes(60_000));
        var id = await CreateAndStartAsync($$"""{"name":"big","file":"{{module}}"}""");
        (await WaitForStateAsync(id, 2)).GetProperty("proplet_id").GetString().ShouldBe(propletId);
        global::Propeller.Manager.Wolverine.PublishToBroker start;
        await using (var session = _server.Services.GetRequiredService<Marten.IDocumentStore>().QuerySession())
        {
            var dispatched = (await session.LoadAsync<Domain.Tasks.TaskState>(new Domain.Tasks.TaskId(Guid.Parse(id)), Ct))!;
            start = _server.Services.GetRequiredService<global::Propeller.Manager.Wolverine.WolverineScheduling>().StartOf(dispatched, null);
        }

        start.ModuleOf.ShouldNotBeNull();
        (await Http.PutAsync($"/tasks/{id}", new StringContent("""{"file":"AGFzbQEAAAA="}""", Encoding.UTF8, "application/json"), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        await new global::Wolverine.Runtime.MessageBus(_server.Services.GetRequiredService<global::Wolverine.Runtime.IWolverineRuntime>()).PublishAsync(start);

        var failed = await WaitForStateAsync(id, 4);
        failed.GetProperty("state").GetInt32().ShouldBe(4, "the run failed, not left Running");
        failed.GetProperty("error").GetString()!.ShouldContain("module was replaced");
        (await Http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("total").GetInt32().ShouldBe(0);
    }

    /// <summary>Runs <paramref name="sql"/> ({schema}: this run's schema) on the manager's database.</summary>
    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = _server.Services.GetRequiredService<NpgsqlDataSource>().CreateCommand(sql.Replace("{schema}", $"\"{Schema}\"", StringComparison.Ordinal));
        return (T)(await command.ExecuteScalarAsync(Ct))!;
    }

    private static Task WaitUntilAsync(Func<bool> condition) => WaitUntilAsync(() => Task.FromResult(condition()));

    /// <summary>Waits up to 30 s for <paramref name="condition"/>, then asserts it.</summary>
    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition() && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, Ct);
        }

        (await condition()).ShouldBeTrue();
    }
}
