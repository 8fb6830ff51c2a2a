using Propeller.Proxy;
using Propeller.Proxy.Configuration;
using Propeller.Proxy.Serving;

// propeller-proxy                                  the proxy: PROXY_* settings (docs/proxy.md), runs until Ctrl-C
// propeller-proxy push FILE.wasm REFERENCE         pushes a module to an OCI registry (demo, tests)
if (args.Length > 0 && args[0] == "push")
{
    return await PushCommand.RunAsync(args[1..], Console.Out, Console.Error, CancellationToken.None);
}

if (args.Length > 0)
{
    Console.Error.WriteLine($"propeller-proxy: unknown command '{args[0]}'");
    Console.Error.WriteLine("usage: propeller-proxy                        (settings from PROXY_* variables or config.toml [proxy])");
    Console.Error.WriteLine($"       propeller-proxy push {PushCommand.Usage}");
    return 2;
}

ProxySettings settings;
try
{
    settings = ProxySettingsLoader.Load(Environment.GetEnvironmentVariable);
}
catch (ProxyConfigurationException ex)
{
    Console.Error.WriteLine($"propeller-proxy: configuration error: {ex.Message}");
    return 78; // EX_CONFIG
}

var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o =>
{
    o.SingleLine = true;
    o.TimestampFormat = "HH:mm:ss.fff ";
});
builder.Logging.SetMinimumLevel(settings.LogLevel);
builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
builder.WebHost.UseUrls($"http://{settings.HttpHost}:{settings.HttpPort.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<ProxyNode>();
builder.Services.AddSingleton<ProxyHostedService>();
builder.Services.AddHostedService(services => services.GetRequiredService<ProxyHostedService>());

var app = builder.Build();
var node = app.Services.GetRequiredService<ProxyNode>();
app.MapGet("/health", () => Results.Json(new HealthJson("ok", "proxy", node.IsConnected), ProxyJsonContext.Default.HealthJson));
app.MapGet("/metrics", () => Results.Text(node.Metrics.Scrape(node.InFlight, node.Cache), "text/plain; version=0.0.4"));
var proxy = app.Services.GetRequiredService<ProxyHostedService>(); // before RunAsync, which disposes the app
await app.RunAsync();
return proxy.Failed ? 1 : 0;
