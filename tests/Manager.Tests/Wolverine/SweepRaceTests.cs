using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Propeller.Infrastructure.Scheduling;
using Propeller.Manager.Wolverine;
using Propeller.Tests.Shared;
using Wolverine;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>
/// The sweep chain going idle while a task is deferred (issue 15): a link that found nothing waiting is held, by
/// <see cref="WolverineScheduling.LinkLookedHook"/>, just before it commits its next link an idle interval ahead; a task
/// is started meanwhile with no proplet (TaskDispatchDeferred) in another transaction; then the link is released.
/// Whatever the order of the two commits, a link must look at the waiting task within about a sweep interval (1 s),
/// not after the idle one (10 minutes here, so a miss cannot pass for a slow machine).
/// </summary>
public sealed class SweepRaceTests
{
    private const string Schema = "wolverine_sweep_race";

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ATaskDeferredWhileALinkGoesIdle_IsSweptWithinASweepInterval()
    {
        var tenant = "r" + Guid.NewGuid().ToString("N")[..12];
        await using var server = await ManagerServer.StartAsync(
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

        // A fresh chain (due a sweep interval ahead), in case the node's first link went idle before the hook was set.
        await ExecuteAsync($"delete from \"{Schema}\".mt_doc_scheduler_timer where id = 'sweep'");
        await server.Services.GetRequiredService<IMessageBus>().SendAsync(new SweepWaitingTasks(null));
        await held.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);

        // The deferral, in its own transaction, while the link is held: it either waits for the link (the fix: the
        // sweep lock) or commits before it (the race); either way it has judged the chain by then.
        using var created = await server.Client.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        var starting = server.Client.PostAsync($"/tasks/{id}/start", null, Ct);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await DeferralWaitsForTheLinkAsync() && !await DeferredAsync(server.Client, id))
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, "the start neither waited for the held link nor committed its deferral");
            await Task.Delay(20, Ct);
        }

        release.SetResult();
        using (var started = await starting)
        {
            started.StatusCode.ShouldBe(HttpStatusCode.OK);
        }

        (await DeferredAsync(server.Client, id)).ShouldBeTrue();
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

    private static async Task<bool> DeferredAsync(HttpClient http, string id) =>
        (await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Any(e => e.GetProperty("type").GetString() == "task.dispatch_deferred.v1");

    /// <summary>Whether a transaction waits for this schema's sweep lock (TransactionLocks: hashtext of schema.name).</summary>
    private static async Task<bool> DeferralWaitsForTheLinkAsync()
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
