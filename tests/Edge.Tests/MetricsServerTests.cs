using System.Net;
using System.Net.Sockets;
using System.Text;
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

    /// <summary>
    /// A HEAD request is answered with the headers only, so the next request on the same keep-alive connection gets a
    /// clean answer: the body written after a HEAD answer went out on the connection and was read as the start of the
    /// next response.
    /// </summary>
    [Fact]
    public async Task GivenAHeadRequest_WhenAGetFollowsOnTheSameConnection_ThenTheGetIsAnsweredCleanly()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = FreePort();
        await using var server = new MetricsServer(port, () => [], () => 0, NullLogger.Instance);
        server.Start().ShouldBeTrue();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, ct);
        var stream = client.GetStream();
        stream.ReadTimeout = 10_000;

        await stream.WriteAsync(Encoding.ASCII.GetBytes("HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n"), ct);
        var head = await ReadHeadersAsync(stream, ct);
        await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"), ct);
        var get = await ReadHeadersAsync(stream, ct);

        head.ShouldStartWith("HTTP/1.1 200");
        head.ShouldContain("Content-Length: 33");
        get.ShouldStartWith("HTTP/1.1 200");
    }

    /// <summary>Reads one byte at a time up to the blank line that ends a response's headers.</summary>
    private static async Task<string> ReadHeadersAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        var text = new StringBuilder();
        var one = new byte[1];
        while (!text.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await stream.ReadAsync(one, timeout.Token) == 0)
            {
                break;
            }

            text.Append((char)one[0]);
        }

        return text.ToString();
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
