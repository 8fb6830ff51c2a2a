using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;
using Wasmtime;
using Propeller.Bench.Support;

namespace Propeller.Bench;

/// <summary>
/// `http-proxy`: requests/s and p50 with wrk (Debian package `wrk`) against the proplet serving proxy.wat's hello-world
/// route (InProcessRuntime with PROPLET_HTTP_ENABLED: Kestrel, a fresh pooled instance per request, the wasi:http host of
/// ADR 0015), and against the same handler as a plain ASP.NET endpoint (Kestrel, "hello, world" as text/plain), in the
/// same run. Prints `http-proxy case=hello proxy_rps=… proxy_p50_us=… aspnet_rps=… aspnet_p50_us=… ratio=…` (target ≥ 0.3).
/// Options: --duration S (default 10), --connections N (default 16), --threads N (default 2).
/// </summary>
internal static partial class HttpProxyBenchmark
{
    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--duration", "--connections", "--threads"]);
        var duration = BenchArgs.Int(args, "--duration", 10);
        var connections = BenchArgs.Int(args, "--connections", 16);
        var threads = BenchArgs.Int(args, "--threads", 2);
        if (!WrkInstalled())
        {
            await Console.Error.WriteLineAsync("http-proxy: wrk is not installed; install it with `sudo apt-get install -y wrk` (Debian package wrk) and run again");
            return 3;
        }

        var settings = new PropletSettings { TenantId = "t", ChannelId = "c", EntityId = "bench", ApiKey = "k", MetricsEnabled = false, HttpEnabled = true };
        using var runtime = new InProcessRuntime(settings, NullLogger<InProcessRuntime>.Instance);
        var proxy = Module.ConvertText(await File.ReadAllTextAsync(TestComponents.Find("proxy.wat"), cancellationToken));
        var proxyPort = FreePort();
        using var task = new RunningTask(new StartRequest(
            new StartMessage { Id = "bench-proxy", Name = "proxy", CliArgs = ["--port", proxyPort.ToString(CultureInfo.InvariantCulture)] },
            new TaskLimits(null, null, null),
            MonitoringProfile.Standard));
        var serving = runtime.RunAsync(task, proxy, cancellationToken);
        if (await Task.WhenAny(serving, task.Started) == serving)
        {
            await Console.Error.WriteLineAsync($"http-proxy: the proxy did not start: {(await serving).Error}");
            return 1;
        }

        var aspnetPort = FreePort();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.ListenAnyIP(aspnetPort);
        });
        await using var app = builder.Build();
        app.Run(context =>
        {
            context.Response.ContentType = "text/plain";
            context.Response.ContentLength = 12;
            return context.Response.Body.WriteAsync("hello, world"u8.ToArray(), context.RequestAborted).AsTask();
        });
        await app.StartAsync(cancellationToken);

        // Warm both (JIT, pool slots), then measure the reference first and the proxy second.
        await WrkAsync(aspnetPort, 2, connections, threads, cancellationToken);
        await WrkAsync(proxyPort, 2, connections, threads, cancellationToken);
        var aspnet = await WrkAsync(aspnetPort, duration, connections, threads, cancellationToken);
        var component = await WrkAsync(proxyPort, duration, connections, threads, cancellationToken);
        Console.WriteLine(FormattableString.Invariant(
            $"http-proxy case=hello proxy_rps={component.Rps:F0} proxy_p50_us={component.P50:F0} aspnet_rps={aspnet.Rps:F0} aspnet_p50_us={aspnet.P50:F0} ratio={component.Rps / aspnet.Rps:F2} connections={connections} duration_s={duration}"));

        await app.StopAsync(cancellationToken);
        task.Abort(StopReason.Stopped);
        await serving;
        return 0;
    }

    private static async Task<(double Rps, double P50)> WrkAsync(int port, int seconds, int connections, int threads, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("wrk", ["-t", threads.ToString(CultureInfo.InvariantCulture), "-c", connections.ToString(CultureInfo.InvariantCulture),
            "-d", seconds.ToString(CultureInfo.InvariantCulture) + "s", "--latency", $"http://127.0.0.1:{port}/"])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        var output = await process.StandardOutput.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        // wrk's rate counts every response, errors included: a run with any is no figure for the server.
        if (output.Contains("Non-2xx", StringComparison.Ordinal) || output.Contains("Socket errors", StringComparison.Ordinal))
        {
            throw new BenchFailedException($"wrk against port {port} saw non-2xx responses or socket errors:\n{output}");
        }

        if (process.ExitCode != 0 || !RequestsPerSecond().IsMatch(output))
        {
            throw new BenchFailedException($"wrk against port {port} exited {process.ExitCode}:\n{output}{await error}");
        }

        var rps = double.Parse(RequestsPerSecond().Match(output).Groups[1].Value, CultureInfo.InvariantCulture);
        var p50 = P50().Match(output);
        var value = double.Parse(p50.Groups[1].Value, CultureInfo.InvariantCulture);
        var micros = p50.Groups[2].Value switch
        {
            "us" => value,
            "ms" => value * 1000,
            "s" => value * 1_000_000,
            _ => double.NaN,
        };
        return (rps, micros);
    }

    private static bool WrkInstalled() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(dir => File.Exists(Path.Combine(dir, "wrk")));

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    [GeneratedRegex(@"Requests/sec:\s+([0-9.]+)")]
    private static partial Regex RequestsPerSecond();

    [GeneratedRegex(@"\s50%\s+([0-9.]+)(us|ms|s)")]
    private static partial Regex P50();
}
