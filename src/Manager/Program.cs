using Propeller.Infrastructure;
using Propeller.Manager;
using Propeller.Manager.Demo;

// The manager host. Today it owns the event store (schema migration at startup, async projection daemon);
// the HTTP API, scheduler and MQTT bridge arrive with the manager-core issue. `demo` runs the event-store demo.
var demo = args.Length > 0 && args[0] == "demo";
var builder = Host.CreateApplicationBuilder(demo ? args[1..] : args);
if (demo)
{
    builder.Logging.SetMinimumLevel(LogLevel.Warning);
}

builder.Services.AddEventStore(o => o.ConnectionString = ManagerSettings.PostgresConnectionString(), runDaemon: !demo);
using var host = builder.Build();
if (demo)
{
    using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
    return await EventStoreDemo.RunAsync(host, cts.Token);
}

await host.RunAsync();
return 0;
