using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Marten;
using Npgsql;
using Propeller.Infrastructure.Scheduling;
using Propeller.Manager.Wolverine;
using Propeller.Tests.Shared;
using Wolverine;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>
/// The sweep chain going idle while a task is deferred (issue 15), both ways round: a link that found nothing waiting
/// held just before it commits its next link an idle interval ahead (<see cref="WolverineScheduling.LinkLookedHook"/>)
/// while a task is started with no proplet (TaskDispatchDeferred) in another transaction; and a deferral held after it
/// judged the chain usable (<see cref="WolverineScheduling.DeferralJudgedHook"/>) while that chain's link runs. Either
/// way a link must look at the waiting task within about a sweep interval (1 s), not after the idle one (10 minutes
/// here, so a miss cannot pass for a slow machine). Both fail without the sweep lock.
/// </summary>
public sealed class SweepRaceTests
{
    private const string Schema = "wolverine_sweep_race";

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ATaskDeferredWhileALinkGoesIdle_IsSweptWithinASweepInterval()
    {
        await using var server = await StartAsync();
        var scheduling = server.Services.GetRequiredService<WolverineScheduling>();

        // Hold the first link that goes idle from here on; record what every link saw.
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var looks = Channel.CreateUnbounded<bool>();
        scheduling.LinkLookedHook = async (waiting, token) =>
        {
            looks.Writer.TryWrite(waiting);
            if (!waiting && held.TrySetResult())
            {
                await release.Task.WaitAsync(token);
            }
        };

        await FreshChainAsync(server);
        await held.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);

        // The deferral, in its own transaction, while the link is held: it either waits for the link (the fix: the
        // sweep lock) or commits before it (the race); either way it has judged the chain by then.
        var id = await CreateAsync(server.Client);
        var starting = server.Client.PostAsync($"/tasks/{id}/start", null, Ct);
        await UntilAsync("the start to wait for the held link or commit its deferral", async () => await SweepLockAwaitedAsync() || await DeferredAsync(server.Client, id));

        release.SetResult();
        using (var started = await starting)
        {
            started.StatusCode.ShouldBe(HttpStatusCode.OK);
        }

        (await DeferredAsync(server.Client, id)).ShouldBeTrue();
        await SweptWithinTenSecondsAsync(looks, id);
    }

    [Fact]
    public async Task ALinkGoingIdleWhileATaskIsDeferred_SeesTheTask()
    {
        await using var server = await StartAsync();
        var scheduling = server.Services.GetRequiredService<WolverineScheduling>();
        var looks = Channel.CreateUnbounded<bool>();
        scheduling.LinkLookedHook = (waiting, _) =>
        {
            looks.Writer.TryWrite(waiting);
            return Task.CompletedTask;
        };

        // Once the node's chain has gone idle (its link committed, the next one due in 10 minutes), make it due now under
        // a token of the test's, whose link the test sends itself while the deferral is held.
        var store = server.Services.GetRequiredService<IDocumentStore>();
        await UntilAsync("the node's sweep chain to go idle", async () =>
        {
            await using var query = store.QuerySession();
            return await query.LoadAsync<SchedulerTimer>(WolverineScheduling.SweepTimerId, Ct) is { } timer && timer.DueAt > DateTimeOffset.UtcNow.AddMinutes(1);
        });
        while (looks.Reader.TryRead(out _))
        {
        }

        var token = Guid.NewGuid();
        await using (var session = store.LightweightSession())
        {
            session.Store(new SchedulerTimer { Id = WolverineScheduling.SweepTimerId, Token = token, DueAt = DateTimeOffset.UtcNow });
            await session.SaveChangesAsync(Ct);
        }

        var judged = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        scheduling.DeferralJudgedHook = async (usable, cancellationToken) =>
        {
            if (judged.TrySetResult(usable))
            {
                await release.Task.WaitAsync(cancellationToken);
            }
        };
        var id = await CreateAsync(server.Client);
        var starting = server.Client.PostAsync($"/tasks/{id}/start", null, Ct);
        (await judged.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct)).ShouldBeTrue("the chain, due now, is usable to the deferral");

        // The link, while the deferral is held: it either waits for the deferral (the sweep lock) or goes idle.
        await server.Services.GetRequiredService<IMessageBus>().SendAsync(new SweepWaitingTasks(token));
        var wentIdle = looks.Reader.ReadAsync(Ct).AsTask();
        await UntilAsync("the link to wait for the held deferral or go idle", async () => wentIdle.IsCompleted || await SweepLockAwaitedAsync());

        release.SetResult();
        using (var started = await starting)
        {
            started.StatusCode.ShouldBe(HttpStatusCode.OK);
        }

        (await wentIdle).ShouldBeTrue($"the link looked again after the deferral of {id} committed");
    }

    private static Task<ManagerServer> StartAsync()
    {
        var tenant = "r" + Guid.NewGuid().ToString("N")[..12];
        return ManagerServer.StartAsync(
            Schema,
            new Dictionary<string, string>
            {
                ["MANAGER_MQTT_ADDRESS"] = Broker,
                ["MANAGER_TENANT_ID"] = tenant,
                ["MANAGER_CHANNEL_ID"] = "ch",
                ["MANAGER_ENTITY_ID"] = "manager-" + tenant,
                ["MANAGER_MQTT_QOS"] = "1",
            },
            services: s => s.PostConfigure<SchedulerOptions>(o => o.IdleSweepInterval = TimeSpan.FromMinutes(10)));
    }

    /// <summary>A fresh chain (due a sweep interval ahead), whatever the node's first link did before the test's hooks were set.</summary>
    private static async Task FreshChainAsync(ManagerServer server)
    {
        await ExecuteAsync($"delete from \"{Schema}\".mt_doc_scheduler_timer where id = 'sweep'");
        await server.Services.GetRequiredService<IMessageBus>().SendAsync(new SweepWaitingTasks(null));
    }

    private static async Task<string> CreateAsync(HttpClient http)
    {
        using var created = await http.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        return (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private static async Task SweptWithinTenSecondsAsync(Channel<bool> looks, string id)
    {
        using var within = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        within.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            while (!await looks.Reader.ReadAsync(within.Token))
            {
            }
        }
        catch (OperationCanceledException ex) when (!Ct.IsCancellationRequested)
        {
            throw new ShouldAssertException($"no link of the sweep chain saw the deferred task {id} within 10 s (the chain went idle for 10 minutes)", ex);
        }
    }

    private static async Task UntilAsync(string what, Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, $"waited 30 s for {what}");
            await Task.Delay(20, Ct);
        }
    }

    private static async Task<bool> DeferredAsync(HttpClient http, string id) =>
        (await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Any(e => e.GetProperty("type").GetString() == "task.dispatch_deferred.v1");

    /// <summary>Whether a transaction waits for this schema's sweep lock (TransactionLocks: hashtext of schema.name).</summary>
    private static async Task<bool> SweepLockAwaitedAsync()
    {
        await using var dataSource = NpgsqlDataSource.Create(await TestPostgres.ConnectionStringAsync());
        await using var command = dataSource.CreateCommand(
            "select count(*) from pg_locks where locktype = 'advisory' and not granted and objsubid = 1 and objid = (hashtext($1)::bigint & 4294967295)::oid");
        command.Parameters.AddWithValue(Schema + ".propeller.sweep_timer");
        return (long)(await command.ExecuteScalarAsync(Ct))! > 0;
    }

    private static async Task ExecuteAsync(string sql)
    {
        await using var dataSource = NpgsqlDataSource.Create(await TestPostgres.ConnectionStringAsync());
        await using var command = dataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync(Ct);
    }
}
