using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.EventStore;
using Propeller.Application.Plugins;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Mqtt;

namespace Propeller.Manager.Tests.Plugins;

/// <summary>
/// The plugin gate runs on the submitting request's own flow, before its command joins a batch (ADR 0016, decision 10):
/// an authorize that takes long holds up only its own request, never the other task commands and proplet results of
/// the node, and a client that goes away cancels its plugin call (spec §7.3: HTTP hooks use the request's context). One
/// batch loop (MANAGER_COMMAND_BATCHES=1), so a plugin call inside a batch would hold every other command.
/// </summary>
public sealed class SlowPluginGateTests : IAsyncLifetime
{
    private readonly HeldGate _gate = new();
    private ManagerServer _server = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(
        "api_plugins_slow",
        new Dictionary<string, string> { ["MANAGER_COMMAND_BATCHES"] = "1" },
        services: s => s.AddSingleton<IPluginGate>(_gate));

    public async ValueTask DisposeAsync()
    {
        _gate.Release();
        await _server.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private static StringContent Body(string name) => new($$"""{"name":"{{name}}"}""", Encoding.UTF8, "application/json");

    [Fact]
    public async Task GivenAnAuthorizeHeldForOneCreate_WhenAnotherCreateAndAPropletResultArrive_ThenBothCommitWhileItIsHeld()
    {
        var slow = Http.PostAsync("/tasks", Body("slow"), Ct);
        await _gate.Holding.Task.WaitAsync(Ct);

        // Only a safety net so that a regression fails instead of hanging: the others must not wait for this release.
        using var safety = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        safety.CancelAfter(TimeSpan.FromSeconds(30));
        await using var _ = safety.Token.Register(_gate.Release);

        var fast = await Http.PostAsync("/tasks", Body("fast"), Ct);
        fast.StatusCode.ShouldBe(HttpStatusCode.Created);
        var id = new TaskId(Guid.Parse((await fast.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!));
        var inbound = _server.Services.GetRequiredService<IInboundCommands>();
        var at = DateTimeOffset.UtcNow;
        var recorded = await inbound.RecordResultsAsync([(new TaskCommand.RecordResult(id, "42", null, at, "p1", 1), EventMetadata.At(at))], Ct);
        var heldThroughout = !_gate.Released;
        _gate.Release();

        heldThroughout.ShouldBeTrue("the create and the result waited for the slow authorize");
        recorded.ShouldBe([null]);
        var slowAnswer = await slow;
        slowAnswer.StatusCode.ShouldBe(HttpStatusCode.Created);

        // The slow command's decision is in its event's metadata, as with a gate inside the batch.
        var slowId = (await slowAnswer.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();
        var created = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{slowId}/history", Ct))[0];
        var decisions = JsonDocument.Parse(created.GetProperty("headers").GetProperty("plugins").GetString()!).RootElement;
        decisions.EnumerateArray().Select(d => d.GetProperty("hook").GetString()).ShouldBe(["authorize", "enrich_task"]);
        decisions[0].GetProperty("plugin").GetString().ShouldBe("held");
    }

    [Fact]
    public async Task GivenAnAuthorizeHeldForACreate_WhenItsClientGoesAway_ThenThePluginCallIsCancelled_AndNothingIsStored()
    {
        using var client = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var slow = Http.PostAsync("/tasks", Body("slow"), client.Token);
        await _gate.Holding.Task.WaitAsync(Ct);

        using var safety = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        safety.CancelAfter(TimeSpan.FromSeconds(30));
        await using var _ = safety.Token.Register(_gate.Release);

        await client.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(slow);

        // Cancelled by the request's token, not released by the safety net: the hook had the request's cancellation.
        (await Task.WhenAny(_gate.Cancelled.Task, _gate.ReleasedTask)).ShouldBe(_gate.Cancelled.Task);
        (await Http.GetFromJsonAsync<JsonElement>("/tasks", Ct)).GetProperty("total").GetInt32().ShouldBe(0);
    }

    /// <summary>
    /// A gate whose authorize for the task named "slow" waits until the test releases it or its caller cancels;
    /// everything else is allowed at once.
    /// </summary>
    private sealed class HeldGate : IPluginGate
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Holding { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task ReleasedTask => _released.Task;

        public bool Released => _released.Task.IsCompleted;

        public void Release() => _released.TrySetResult();

        private static PluginDecision[] Decision(string hook) => [new PluginDecision("held", hook, true, null, TimeSpan.FromMicroseconds(5))];

        public async ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
        {
            if (task.Name == "slow")
            {
                Holding.TrySetResult();
                try
                {
                    await _released.Task.WaitAsync(cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    Cancelled.TrySetResult();
                    throw;
                }
            }

            return new GateOutcome(true, null, Decision("authorize"));
        }

        public ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) =>
            ValueTask.FromResult(EnrichOutcome.None with { Decisions = Decision("enrich_task") });

        public ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) =>
            ValueTask.FromResult(SelectOutcome.Allow);

        public ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken) =>
            ValueTask.FromResult(new DispatchOutcome(true, null, new Dictionary<string, string>(), []));

        public void OnTaskStarted(PluginTaskInfo task)
        {
        }

        public void OnTaskCompleted(PluginTaskInfo task, bool success, string? error)
        {
        }
    }
}
