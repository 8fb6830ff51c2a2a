using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
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
        while (!(await http.GetAsync("/health/ready", cancellationToken)).IsSuccessStatusCode)
        {
            await Task.Delay(20, cancellationToken);
        }

        return new BenchManager(app, http, broker, tenant);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync(CancellationToken.None);
        await App.DisposeAsync();
    }
}
