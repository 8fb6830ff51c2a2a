using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;

namespace Propeller.Edge.Tests;

/// <summary>A proplet's Prometheus endpoint, against the real mosquitto (PROPELLER_TEST_MQTT).</summary>
public sealed class PropletPrometheusTests
{
    /// <summary>With the MQTT metrics off, proplet_cpu_usage_ratio is still measured: the scrape has its own baseline
    /// (the gauge used to show the MQTT loop's last figure, 0 for ever here).</summary>
    [Fact]
    public async Task GivenMonitoringOff_WhenTheCpuIsBusyBetweenTwoScrapes_ThenTheCpuUsageRatioIsAboveZero()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = FreePort();
        var settings = TestSettings.Create() with { EnableMonitoring = false, MetricsEnabled = true, MetricsPort = port };
        await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        await node.StartAsync(ct);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(30) };

        await CpuRatioAsync(http, ct);
        // Keep a core busy for 300 ms of this process's CPU time (30 ticks of /proc/stat at 100 Hz).
        using var self = Process.GetCurrentProcess();
        var until = self.TotalProcessorTime + TimeSpan.FromMilliseconds(300);
        var spin = 0UL;
        while (true)
        {
            for (var i = 0; i < 1_000_000; i++)
            {
                spin += (ulong)i;
            }

            self.Refresh();
            if (self.TotalProcessorTime >= until)
            {
                break;
            }
        }

        (await CpuRatioAsync(http, ct)).ShouldBeGreaterThan(0, $"spun {spin}");
    }

    private static async Task<double> CpuRatioAsync(HttpClient http, CancellationToken ct)
    {
        var text = await http.GetStringAsync("metrics", ct);
        var line = text.Split('\n').Single(l => l.StartsWith("proplet_cpu_usage_ratio ", StringComparison.Ordinal));
        return double.Parse(line["proplet_cpu_usage_ratio ".Length..], CultureInfo.InvariantCulture);
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
