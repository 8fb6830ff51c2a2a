using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Manager.Wolverine;
using Wolverine;
using static Propeller.Domain.Proplets.PropletCommand;

namespace Propeller.Manager.Tests.Proplets;

public sealed class PropletApiTests : IAsyncLifetime
{
    private ManagerServer _server = null!;

    private const string Schema = "api_proplets";

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(Schema, null);

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    private IMessageBus Bus => _server.Services.GetRequiredService<IMessageBus>();

    private Task<CommandResult<PropletEvent, PropletState>> ProposeAsync(PropletCommand command) =>
        Bus.InvokeAsync<CommandResult<PropletEvent, PropletState>>(RunPropletCommand.For(command, EventMetadata.At(DateTimeOffset.UtcNow)), Ct);

    private IPropletRegistry Registry => _server.Services.GetRequiredService<IPropletRegistry>();

    private static async Task<JsonElement> BodyAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;

    private async Task<PropletId> RegisterAsync(string name, PropletMetadata? metadata = null, bool heartbeat = true)
    {
        var id = new PropletId(Guid.NewGuid().ToString());
        var result = await ProposeAsync(new RegisterProplet(id, name, metadata ?? PropletMetadata.Empty, DateTimeOffset.UtcNow));
        result.Rejection.ShouldBeNull();
        if (heartbeat)
        {
            (await Registry.RecordHeartbeatAsync(id, DateTimeOffset.UtcNow, Ct)).ShouldBe(false);
        }

        return id;
    }

    [Fact]
    public async Task GetProplet_ShowsTheOriginalsShape_WithLivenessAndMetadata()
    {
        var id = await RegisterAsync("Connolly-Bateman", new PropletMetadata { Hostname = "h1", Tags = new EquatableArray<string>(["gpu"]), TotalMemoryBytes = 16_777_216_000 });

        var proplet = await BodyAsync(await Http.GetAsync($"/proplets/{id}", Ct));

        proplet.GetProperty("id").GetString().ShouldBe(id.Value);
        proplet.GetProperty("name").GetString().ShouldBe("Connolly-Bateman");
        proplet.GetProperty("alive").GetBoolean().ShouldBeTrue();
        proplet.GetProperty("task_count").GetInt32().ShouldBe(0);
        proplet.GetProperty("last_alive_at").GetString().ShouldNotBeNullOrEmpty();
        var metadata = proplet.GetProperty("metadata");
        metadata.GetProperty("hostname").GetString().ShouldBe("h1");
        metadata.GetProperty("total_memory_bytes").GetUInt64().ShouldBe(16_777_216_000UL);
        metadata.TryGetProperty("description", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task List_FiltersByStatus_AndPages()
    {
        await RegisterAsync("Alive-One");
        await RegisterAsync("Never-Heard", heartbeat: false);
        var offline = await RegisterAsync("Gone-Away");
        await ProposeAsync(new MarkPropletOffline(offline, "last will", DateTimeOffset.UtcNow));

        var all = await BodyAsync(await Http.GetAsync("/proplets", Ct));
        all.GetProperty("total").GetInt32().ShouldBe(3);
        var active = await BodyAsync(await Http.GetAsync("/proplets?status=active", Ct));
        active.GetProperty("proplets").EnumerateArray().Select(p => p.GetProperty("name").GetString()).ShouldBe(["Alive-One"]);
        (await BodyAsync(await Http.GetAsync("/proplets?status=inactive", Ct))).GetProperty("total").GetInt32().ShouldBe(2);
        (await BodyAsync(await Http.GetAsync("/proplets?offset=1&limit=1", Ct))).GetProperty("proplets").GetArrayLength().ShouldBe(1);
        (await Http.GetAsync("/proplets?status=sleeping", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task AliveHistory_KeepsTheLastTenHeartbeats()
    {
        var id = await RegisterAsync("Beating-Heart", heartbeat: false);
        var now = DateTimeOffset.UtcNow.AddMinutes(-1);
        var t0 = new DateTimeOffset(now.Ticks - (now.Ticks % 10), TimeSpan.Zero); // PostgreSQL keeps microseconds
        for (var i = 0; i < 12; i++)
        {
            await Registry.RecordHeartbeatAsync(id, t0.AddSeconds(i), Ct);
        }

        var history = await BodyAsync(await Http.GetAsync($"/proplets/{id}/alive-history", Ct));

        history.GetProperty("total").GetInt32().ShouldBe(10);
        history.GetProperty("history")[0].GetString().ShouldBe(t0.AddSeconds(2).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", System.Globalization.CultureInfo.InvariantCulture));
        (await Http.GetAsync($"/proplets/{Guid.NewGuid()}/alive-history", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Delete_IsRefusedWhileTasksRunOnIt_ThenAllowed()
    {
        var id = await RegisterAsync("Busy-Bee");
        var task = new TaskId(Guid.CreateVersion7());
        var meta = EventMetadata.At(DateTimeOffset.UtcNow);
        async Task TaskAsync(TaskCommand command) => await Bus.InvokeAsync<CommandResult<TaskEvent, TaskState>>(new RunTaskCommand(task, command, meta), Ct);
        await TaskAsync(new TaskCommand.CreateTask(task, TaskSpec.Named("t"), DateTimeOffset.UtcNow));
        await TaskAsync(new TaskCommand.StartTask(task, DateTimeOffset.UtcNow));
        await TaskAsync(new TaskCommand.DispatchTask(task, id.Value, DateTimeOffset.UtcNow));

        (await BodyAsync(await Http.GetAsync($"/proplets/{id}", Ct))).GetProperty("task_count").GetInt32().ShouldBe(1);
        var refused = await Http.DeleteAsync($"/proplets/{id}", Ct);
        refused.StatusCode.ShouldBe(HttpStatusCode.Conflict);
        (await BodyAsync(refused)).GetProperty("error").GetString().ShouldBe($"conflict: proplet {id} has 1 active tasks");

        await TaskAsync(new TaskCommand.RecordResult(task, "42", null, DateTimeOffset.UtcNow));
        (await Http.DeleteAsync($"/proplets/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await Http.GetAsync($"/proplets/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    /// <summary>
    /// A proplet whose id is a task's (a UUID names its stream directly) is refused: nothing lands in the task's stream,
    /// its history and replay stay the task's, and no proplet of that id appears.
    /// </summary>
    [Fact]
    public async Task AProplet_AnnouncingATasksId_IsRefused_AndTheTasksStreamIsUntouched()
    {
        var created = await Http.PostAsync("/tasks", new StringContent("""{"name":"main"}""", System.Text.Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var taskId = (await BodyAsync(created)).GetProperty("id").GetString()!;

        var result = await ProposeAsync(new RegisterProplet(new PropletId(taskId), "impostor", PropletMetadata.Empty, DateTimeOffset.UtcNow));

        result.Rejection.ShouldNotBeNull().Kind.ShouldBe(RejectionKind.Invalid);
        result.Rejection.Reason.ShouldContain("task's stream");
        var history = (await BodyAsync(await Http.GetAsync($"/tasks/{taskId}/history", Ct))).EnumerateArray().ToList();
        history.Select(e => e.GetProperty("type").GetString()).ShouldBe(["task.created.v1"]);
        (await Http.GetAsync($"/tasks/{taskId}?version=1", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Http.GetAsync($"/proplets/{taskId}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    /// <summary>A proplet whose id is a UUID has its stream under that UUID, as a task has: the task routes do not read
    /// it as a task's. Before, its history answered the proplet's events and its replay a 500 (folding them into a task).</summary>
    [Fact]
    public async Task TheTaskRoutes_OfAPropletsUuid_AreNotFound()
    {
        var id = await RegisterAsync("uuid-named");

        (await Http.GetAsync($"/tasks/{id}/history", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.GetAsync($"/tasks/{id}?version=1", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.GetAsync($"/tasks/{id}?at=2100-01-01T00:00:00Z", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.GetAsync($"/tasks/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.GetAsync($"/proplets/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    /// <summary>A proplet's id is its PROPLET_ENTITY_ID, any string: its metrics are listed (the original checks only
    /// that the id is non-empty on this route); it was a 400 for an id that is not a UUID.</summary>
    [Fact]
    public async Task Metrics_OfAPropletWhoseIdIsNotAUuid_AreListed()
    {
        var id = new PropletId("edge-node-1");
        (await ProposeAsync(new RegisterProplet(id, "Edge-Node", PropletMetadata.Empty, DateTimeOffset.UtcNow))).Rejection.ShouldBeNull();

        var response = await Http.GetAsync($"/proplets/{id}/metrics", Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await BodyAsync(response)).GetProperty("total").GetInt64().ShouldBe(0);
        (await Http.GetAsync("/proplets/no-such-proplet/metrics", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    /// <summary>
    /// A proplet whose PROPLET_ENTITY_ID is not a UUID (any string is taken at discovery) is read, described and deleted
    /// by its id like any other: the original's routes asked for a UUID (§9.10), so `propeller proplet get` and the
    /// dashboard's proplet page answered 400 for the ids the proplet list showed.
    /// </summary>
    [Fact]
    public async Task APropletWhoseIdIsNotAUuid_IsRead_Described_AndDeleted()
    {
        var id = new PropletId("edge-node-" + Guid.NewGuid().ToString("N")[..8]);
        (await ProposeAsync(new RegisterProplet(id, "Edge-Node", PropletMetadata.Empty, DateTimeOffset.UtcNow))).Rejection.ShouldBeNull();

        (await BodyAsync(await Http.GetAsync($"/proplets/{id}", Ct))).GetProperty("id").GetString().ShouldBe(id.Value);
        (await Http.GetAsync($"/proplets/{id}/sdf", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Http.DeleteAsync($"/proplets/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await Http.GetAsync($"/proplets/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    /// <summary>An id holding "/" is reached with it encoded (%2F, which ASP.NET leaves encoded in a route value: it was a
    /// 404) on every proplet route.</summary>
    [Fact]
    public async Task APropletWhoseIdHoldsASlash_IsReachedWithItEncoded()
    {
        var id = new PropletId("site-1/edge-" + Guid.NewGuid().ToString("N")[..8]);
        (await ProposeAsync(new RegisterProplet(id, "Slashed", PropletMetadata.Empty, DateTimeOffset.UtcNow))).Rejection.ShouldBeNull();
        var route = "/proplets/" + Uri.EscapeDataString(id.Value);

        (await BodyAsync(await Http.GetAsync(route, Ct))).GetProperty("id").GetString().ShouldBe(id.Value);
        (await Http.GetAsync(route + "/sdf", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Http.GetAsync(route + "/alive-history", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Http.GetAsync(route + "/metrics", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Http.DeleteAsync(route, Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await Http.GetAsync(route, Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task UnknownIds_Are404()
    {
        (await Http.GetAsync("/proplets/nope", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.DeleteAsync("/proplets/nope", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.GetAsync("/proplets/nope/sdf", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.GetAsync($"/proplets/{Guid.NewGuid()}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.DeleteAsync($"/proplets/{Guid.NewGuid()}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Registry.RecordHeartbeatAsync(new PropletId("unknown"), DateTimeOffset.UtcNow, Ct)).ShouldBeNull();
    }
}
