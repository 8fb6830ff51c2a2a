using Marten;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.EventStore;
using Propeller.Domain.Proplets;
using Propeller.Infrastructure.Mqtt;
using Propeller.Infrastructure.Scheduling;
using Propeller.Manager.Wolverine;
using Wolverine;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>
/// The sweep chain and a liveness chain when one of their links is handled twice (ADR 0014, decision 13): a stalled
/// node's envelope recovered by a survivor while the node finishes it, or a commit that succeeded on the server retried
/// inline after a connection error. Each handling schedules a next link; with the token the link came with both next
/// links passed the token check and the chain ran twice for good (each further double handling doubled it again). With
/// a fresh token per handling the second handling finds the token changed and stops: one next link.
/// </summary>
public sealed class TimerChainTests : IAsyncLifetime
{
    private readonly string _tenant = "t" + Guid.NewGuid().ToString("N")[..12];
    private ManagerServer _server = null!;

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A schema per test: wolverine_timer_chain_{the test's initials}.</summary>
    private static string Schema => "wolverine_timer_chain_" + new string([.. (TestContext.Current.TestMethod?.MethodName ?? "x").Where(char.IsUpper)]).ToLowerInvariant();

    // Nothing of the chains fires by itself during a test: the idle sweep and the liveness window are ten minutes.
    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(Schema, new Dictionary<string, string>
    {
        ["MANAGER_MQTT_ADDRESS"] = Broker,
        ["MANAGER_TENANT_ID"] = _tenant,
        ["MANAGER_CHANNEL_ID"] = "ch",
        ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
        ["MANAGER_PROPLET_LIVENESS_WINDOW"] = "10m",
    }, services: s => s.PostConfigure<SchedulerOptions>(o => o.IdleSweepInterval = TimeSpan.FromMinutes(10)));

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    [Fact]
    public async Task GivenASweepLink_WhenItIsHandledTwice_ThenTheChainHasOneNextLink()
    {
        // The node's chain once its start sweep has gone idle (its next link ten minutes ahead).
        var token = await WaitForTimerAsync(WolverineScheduling.SweepTimerId);
        var before = await ScheduledAsync(nameof(SweepWaitingTasks));

        var bus = _server.Services.GetRequiredService<IMessageBus>();
        await bus.InvokeAsync(new SweepWaitingTasks(token), Ct);
        await bus.InvokeAsync(new SweepWaitingTasks(token), Ct);

        var current = (await LoadAsync(WolverineScheduling.SweepTimerId))!.Token;
        (await ScheduledAsync(nameof(SweepWaitingTasks))).ShouldBe(before + 1, "one next link, not one per handling");
        current.ShouldNotBe(token);
        (await ScheduledAsync(nameof(SweepWaitingTasks), current)).ShouldBe(1);
    }

    [Fact]
    public async Task GivenALivenessCheck_WhenItIsHandledTwice_ThenTheChainHasOneNextCheck()
    {
        // A proplet discovered and never heard from: not silent, so each check schedules the next one.
        var propletId = Guid.NewGuid().ToString();
        var at = DateTimeOffset.UtcNow;
        await _server.Services.GetRequiredService<IInboundCommands>().HandlePropletAsync(
            new PropletCommand.RegisterProplet(new PropletId(propletId), "p-" + propletId[..8], PropletMetadata.Empty, at), new EventMetadata(null, null, null, at), Ct);
        var id = SchedulerTimer.Liveness(propletId);
        var token = await WaitForTimerAsync(id);
        var before = await ScheduledAsync(nameof(CheckLiveness));

        var bus = _server.Services.GetRequiredService<IMessageBus>();
        await bus.InvokeAsync(new CheckLiveness(propletId, token), Ct);
        await bus.InvokeAsync(new CheckLiveness(propletId, token), Ct);

        var current = (await LoadAsync(id))!.Token;
        (await ScheduledAsync(nameof(CheckLiveness))).ShouldBe(before + 1, "one next check, not one per handling");
        current.ShouldNotBe(token);
        (await ScheduledAsync(nameof(CheckLiveness), current)).ShouldBe(1);
    }

    /// <summary>The timer's token once it is stored and due at least a minute ahead (its chain idle, nothing due soon).</summary>
    private async Task<Guid> WaitForTimerAsync(string id)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (await LoadAsync(id) is { } timer && timer.DueAt > DateTimeOffset.UtcNow.AddMinutes(1))
            {
                return timer.Token;
            }

            DateTime.UtcNow.ShouldBeLessThan(deadline, $"waited 30 s for the timer {id}");
            await Task.Delay(50, Ct);
        }
    }

    private async Task<SchedulerTimer?> LoadAsync(string id)
    {
        await using var query = _server.Services.GetRequiredService<IDocumentStore>().QuerySession();
        return await query.LoadAsync<SchedulerTimer>(id, Ct);
    }

    /// <summary>Scheduled messages of a type in Wolverine's incoming envelopes; with <paramref name="token"/>, those that carry it.</summary>
    private async Task<long> ScheduledAsync(string type, Guid? token = null)
    {
        var dataSource = _server.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await using var command = dataSource.CreateCommand(
            $"select count(*) from {Schema}.wolverine_incoming_envelopes where status = 'Scheduled' and message_type like $1 and ($2 = '' or position(convert_to($2, 'UTF8') in body) > 0)");
        command.Parameters.AddWithValue("%" + type);
        command.Parameters.AddWithValue(token?.ToString() ?? "");
        return (long)(await command.ExecuteScalarAsync(Ct))!;
    }
}
