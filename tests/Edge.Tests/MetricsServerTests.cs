using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Edge.Monitoring;

namespace Propeller.Edge.Tests;

public sealed class MetricsServerTests
{
    [Fact]
    public async Task GivenASeriesThatThrows_WhenMetricsAreScraped_ThenItIs500_AndTheServerStillAnswers_AndDisposeDoesNotThrow()
    {
        var port = FreePort();
        var server = new MetricsServer(port, () => throw new InvalidOperationException("series broke"), () => 3, NullLogger.Instance);
        server.Start().ShouldBeTrue();
        // The timeout only keeps a regression (a loop that stopped answering) from hanging the run.
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(30) };

        (await http.GetAsync("metrics", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.InternalServerError);
        var health = await http.GetAsync("health", TestContext.Current.CancellationToken);
        health.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await health.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).ShouldBe("""{"status":"ok","running_tasks":3}""");

        await Should.NotThrowAsync(async () => await server.DisposeAsync());
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
