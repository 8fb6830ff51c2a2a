using System.Diagnostics;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using Propeller.Bench.Support;
using Propeller.Manager;

namespace Propeller.Bench.Manager;

/// <summary>
/// The real manager for a benchmark: in-process Kestrel on a free loopback port, a fresh schema in the test database
/// (PROPELLER_TEST_DB), the test broker (PROPELLER_TEST_MQTT) under a tenant of its own, QoS 1; ready when returned.
/// </summary>
internal sealed class BenchManager : IAsyncDisposable
{
    private BenchManager(WebApplication app, HttpClient http, string broker, string tenant)
    {
        Tenant = tenant;
        App = app;
        Http = http;
        Broker = broker;
        BaseTopic = $"m/{tenant}/c/bench";
    }

    public string Tenant { get; }

    public WebApplication App { get; }

    public HttpClient Http { get; }

    public string Broker { get; }

    /// <summary><c>m/{tenant}/c/bench</c>.</summary>
    public string BaseTopic { get; }

    public static string Database =>
        Environment.GetEnvironmentVariable("PROPELLER_TEST_DB") is { Length: > 0 } v ? v : "Host=127.0.0.1;Port=55432;Username=propeller;Password=propeller;Database=propeller_test";

    /// <param name="schema">Dropped first, then the manager's.</param>
    /// <param name="tenantPrefix">A fresh tenant per run (its own topics).</param>
    /// <param name="cancellationToken">Stops the start.</param>
    /// <param name="settings">More MANAGER_* settings (the durability comparison selects the mode with them).</param>
    public static async Task<BenchManager> StartAsync(string schema, string tenantPrefix, CancellationToken cancellationToken, IReadOnlyDictionary<string, string>? settings = null)
    {
        var broker = Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } m ? m : "tcp://127.0.0.1:51883";
        var tenant = tenantPrefix + Guid.NewGuid().ToString("N")[..8];
        await using (var dataSource = NpgsqlDataSource.Create(Database))
        await using (var drop = dataSource.CreateCommand($"drop schema if exists {schema} cascade"))
        {
            await drop.ExecuteNonQueryAsync(cancellationToken);
        }

        var app = ManagerApp.Build(["--urls", "http://127.0.0.1:0"], b =>
        {
            b.Configuration["EventStore:ConnectionString"] = Database;
            b.Configuration["EventStore:Schema"] = schema;
            b.Configuration["MANAGER_MQTT_ADDRESS"] = broker;
            b.Configuration["MANAGER_TENANT_ID"] = tenant;
            b.Configuration["MANAGER_CHANNEL_ID"] = "bench";
            b.Configuration["MANAGER_ENTITY_ID"] = "manager-" + tenant;
            b.Configuration["MANAGER_MQTT_QOS"] = "1";
            foreach (var (key, value) in settings ?? new Dictionary<string, string>())
            {
                b.Configuration[key] = value;
            }

            b.Logging.SetMinimumLevel(LogLevel.Warning);
        });
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var http = new HttpClient { BaseAddress = new Uri(address) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using var ready = await http.GetAsync("/health/ready", cancellationToken);
            if (ready.IsSuccessStatusCode)
            {
                break;
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(60))
            {
                var body = await ready.Content.ReadAsStringAsync(cancellationToken);
                http.Dispose();
                await app.StopAsync(CancellationToken.None);
                await app.DisposeAsync();
                throw new BenchFailedException($"the manager ({schema}) was not ready within 60 s: /health/ready answered {(int)ready.StatusCode} {body}");
            }

            await Task.Delay(20, cancellationToken);
        }

        return new BenchManager(app, http, broker, tenant);
    }

    /// <summary>
    /// Waits until at least <paramref name="count"/> proplets are active, for 60 s at most; a proplet process that
    /// exits meanwhile fails the run at once, with what it wrote on stderr (<see cref="EndToEnd.EndToEndBenchmark.StartProplet"/>).
    /// </summary>
    public async Task WaitPropletsActiveAsync(int count, Process? proplet, StringBuilder? stderr, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        var active = 0;
        while ((active = await ManagerBenchmark.GetTotalAsync(Http, "/proplets?status=active", cancellationToken)) < count)
        {
            if (proplet is { HasExited: true })
            {
                throw new BenchFailedException($"the proplet exited ({proplet.ExitCode}) before it was active:\n{Captured(stderr)}");
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(60))
            {
                throw new BenchFailedException($"{active} of {count} proplets active after 60 s:\n{Captured(stderr)}");
            }

            await Task.Delay(50, cancellationToken);
        }
    }

    private static string Captured(StringBuilder? stderr)
    {
        if (stderr is null)
        {
            return "(no proplet process)";
        }

        lock (stderr)
        {
            return stderr.Length > 0 ? stderr.ToString() : "(nothing on its stderr)";
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync(CancellationToken.None);
        await App.DisposeAsync();
    }
}
