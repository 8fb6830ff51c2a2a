using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using Propeller.Tests.Shared;

namespace Propeller.Manager.Tests;

/// <summary>
/// The real manager (Kestrel on a free loopback port) on a real PostgreSQL (tests/Shared/TestPostgres.cs) in a schema of its
/// own, dropped before the test (not after, so a failure leaves its evidence).
/// </summary>
internal sealed class ManagerServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ManagerServer(WebApplication app, HttpClient client, CapturedWarnings warnings)
    {
        _app = app;
        Client = client;
        Warnings = warnings;
    }

    public HttpClient Client { get; }

    /// <summary>What the manager logged at warning and above (for a failing test's message).</summary>
    public CapturedWarnings Warnings { get; }

    public IServiceProvider Services => _app.Services;

    public static async Task<ManagerServer> StartAsync(
        string schema, IReadOnlyDictionary<string, string>? settings = null, bool dropSchema = true, bool waitUntilReady = true, Action<IServiceCollection>? services = null,
        bool runDaemon = true, string[]? args = null)
    {
        var db = await TestPostgres.ConnectionStringAsync();
        if (dropSchema)
        {
            await using var dataSource = NpgsqlDataSource.Create(db);
            await using var drop = dataSource.CreateCommand($"drop schema if exists \"{schema}\" cascade");
            await drop.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        // args: null listens on a free loopback port over plain HTTP; [] leaves the address to MANAGER_HTTP_* settings.
        var warnings = new CapturedWarnings();
        var app = ManagerApp.Build(args ?? ["--urls", "http://127.0.0.1:0"], b =>
        {
            b.Configuration["EventStore:ConnectionString"] = db;
            b.Configuration["EventStore:Schema"] = schema;

            // Only what the test asks for: the test command exports the broker address for everything else.
            b.Configuration["MANAGER_MQTT_ADDRESS"] = "";
            foreach (var (key, value) in settings ?? new Dictionary<string, string>())
            {
                b.Configuration[key] = value;
            }

            b.Logging.SetMinimumLevel(LogLevel.Warning);
            b.Logging.AddProvider(warnings);
            services?.Invoke(b.Services);
        }, runDaemon);
        await app.StartAsync(TestContext.Current.CancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var client = new HttpClient { BaseAddress = new Uri(address) };
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (waitUntilReady && !(await client.GetAsync("/health/ready", TestContext.Current.CancellationToken)).IsSuccessStatusCode)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("the manager did not become ready (PostgreSQL and broker)");
            }

            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        return new ManagerServer(app, client, warnings);
    }

    /// <summary>Stops the host as a shutdown signal would (within HostOptions.ShutdownTimeout).</summary>
    public Task StopAsync() => _app.StopAsync(CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
    }
}
