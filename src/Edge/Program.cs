using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Propeller.Edge;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;

// propeller-proplet                               the proplet: PROPLET_* settings (docs/edge.md), runs until Ctrl-C
// propeller-proplet run [OPTIONS] FILE.wasm ARGS  runs a module locally on Wasmtime, without MQTT (like `wasmtime run`)
// propeller-proplet serve [OPTIONS] FILE.wasm     serves an HTTP proxy component locally (like `wasmtime serve`)
if (args.Length > 0 && args[0] == "run")
{
    return RunCommand.Run("propeller-proplet run", args[1..], Console.Out, Console.Error, inheritStdio: true);
}

if (args.Length > 0 && args[0] == "serve")
{
    using var loggers = LoggerFactory.Create(logging => logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
    return await ServeCommand.RunAsync("propeller-proplet serve", args[1..], Console.Error, loggers);
}

if (args.Length > 0)
{
    Console.Error.WriteLine($"propeller-proplet: unknown command '{args[0]}'");
    Console.Error.WriteLine($"usage: propeller-proplet                (settings from PROPLET_* variables or config.toml)");
    Console.Error.WriteLine($"       propeller-proplet run {RunCommand.OptionsUsage}");
    Console.Error.WriteLine($"       propeller-proplet serve {ServeCommand.OptionsUsage}");
    return 2;
}

PropletSettings settings;
try
{
    settings = PropletSettingsLoader.Load(Environment.GetEnvironmentVariable);
}
catch (ConfigurationException ex)
{
    Console.Error.WriteLine($"propeller-proplet: configuration error: {ex.Message}");
    return 78; // EX_CONFIG
}

// No file watching for configuration reloads (the proplet reads PROPLET_* and config.toml once): the watcher on the
// content root is recursive and spent CPU on every write below the working directory. Given as a command-line
// argument, as the manager and the proxy do: set on a ConfigurationManager passed in the settings it was not applied
// (20,382 inotify watches from a repository checkout, every registry push of the proxy benchmark processed by the
// proplet; issue 17, session 11).
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
builder.Logging.ClearProviders();
if (settings.JsonLogs)
{
    builder.Logging.AddJsonConsole(o =>
    {
        o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        o.UseUtcTimestamp = true;
    });
}
else
{
    builder.Logging.AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.TimestampFormat = "HH:mm:ss.fff ";
    });
}

builder.Logging.SetMinimumLevel(settings.LogLevel);
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<PropletHostedService>();
builder.Services.AddHostedService(services => services.GetRequiredService<PropletHostedService>());
var host = builder.Build();
var proplet = host.Services.GetRequiredService<PropletHostedService>(); // before RunAsync, which disposes the host
await host.RunAsync();
return proplet.Failed ? 1 : 0;
