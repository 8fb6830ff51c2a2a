using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Fetching;
using Propeller.Edge.Monitoring;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

/// <summary>http(s) image URLs against a local HttpListener, and per-task metrics, through the task pipeline.</summary>
public sealed class HttpFetchTests : IAsyncDisposable
{
    private readonly InMemoryPublisher _published = new();
    private readonly PropletSettings _settings = TestSettings.Create("me");
    private readonly InProcessRuntime _runtime;
    private readonly HttpClient _http = new();
    private readonly TaskRunner _runner;
    private readonly HttpListener _listener = new();
    private readonly string _base;
    private readonly Task _serving;

    public HttpFetchTests()
    {
        _runtime = new InProcessRuntime(_settings, NullLogger<InProcessRuntime>.Instance);
        var fetcher = new BinaryFetcher(_settings, new ChunkAssembler(_settings.MaxBinarySize, TimeProvider.System), _published, _http);
        var monitor = new TaskMonitor(_settings, _published, TimeProvider.System, NullLogger<TaskMonitor>.Instance);
        _runner = new TaskRunner(_settings, _runtime, fetcher, _published, monitor, NullLogger<TaskRunner>.Instance);
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            _base = $"http://127.0.0.1:{((IPEndPoint)probe.LocalEndpoint).Port}/";
        }

        _listener.Prefixes.Add(_base);
        _listener.Start();
        _serving = ServeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _runner.DisposeAsync();
        try
        {
            _listener.Stop();
            _listener.Close();
        }
        catch (HttpListenerException)
        {
            // Linux's managed HttpListener may bind its port once more to remove the prefix, and fail if the port was
            // taken meanwhile (seen once in CI after a connection of this class was aborted): teardown only.
        }

        try
        {
            await _serving;
        }
        catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
        {
            // stopped
        }

        _runtime.Dispose();
        _http.Dispose();
    }

    [Theory]
    [InlineData("add.wasm", null)]
    [InlineData("add.bin", null)]
    [InlineData("page.html", "unexpected Content-Type 'text/html' fetching wasm from")]
    [InlineData("missing.wasm", "HTTP 404 Not Found fetching wasm from")]
    [InlineData("cut.wasm", "error fetching wasm from")]
    public async Task GivenAnHttpImageUrl_WhenStarted_ThenTheBinaryIsDownloadedAndCheckedFirst(string file, string? error)
    {
        _runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "h-" + file, name = "main", image_url = _base + file, inputs = new[] { "40", "2" } }));

        var result = await _published.NextAsync(Topics.Results, TestContext.Current.CancellationToken);

        if (error is null)
        {
            result.GetProperty("results").GetString().ShouldBe("42");
        }
        else
        {
            result.GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith(error);
        }
    }

    /// <summary>An http(s) image_url that is not a URL is the task's fetch error, as an unreachable one is: it failed as
    /// "internal proplet error: Invalid URI: …", logged as a crash of the proplet.</summary>
    [Theory]
    [InlineData("http://[::1")]
    [InlineData("http://127.0.0.1:99999/add.wasm")]
    [InlineData("https://")]
    public async Task GivenAnImageUrlThatIsNotAUrl_WhenStarted_ThenTheFetchErrorNamesIt(string url)
    {
        _runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new { id = "bad-url", name = "main", image_url = url, inputs = new[] { "40", "2" } }));

        var result = await _published.NextAsync(Topics.Results, TestContext.Current.CancellationToken);

        result.GetProperty("error").GetString().ShouldNotBeNull().ShouldStartWith($"error fetching wasm from {url}: Invalid URI");
    }

    [Fact]
    public async Task GivenAMonitoringProfile_WhenATaskRunsLongerThanItsInterval_ThenTaskMetricsArePublished()
    {
        _runner.HandleStart(JsonSerializer.SerializeToUtf8Bytes(new
        {
            id = "watched",
            name = "main",
            file = Convert.ToBase64String(Modules.Spin),
            monitoring_profile = new
            {
                enabled = true,
                interval = 1,
                collect_cpu = true,
                collect_memory = true,
                collect_disk_io = true,
                collect_threads = true,
                collect_file_descriptors = true,
                export_to_mqtt = true,
                retain_history = true,
                history_size = 10,
            },
        }));

        var metrics = await _published.NextAsync(Topics.TaskMetrics, TestContext.Current.CancellationToken);
        _runner.HandleStop(JsonSerializer.SerializeToUtf8Bytes(new { id = "watched" }));

        metrics.GetProperty("task_id").GetString().ShouldBe("watched");
        metrics.GetProperty("proplet_id").GetString().ShouldBe("me");
        metrics.GetProperty("metrics").GetProperty("memory_bytes").GetUInt64().ShouldBeGreaterThan(0UL);
        metrics.GetProperty("metrics").GetProperty("thread_count").GetUInt32().ShouldBeGreaterThan(0U);
        metrics.GetProperty("aggregated").GetProperty("sample_count").GetInt32().ShouldBe(1);
        DateTimeOffset.TryParse(metrics.GetProperty("timestamp").GetString(), out _).ShouldBeTrue();
        (await _published.NextAsync(Topics.Results, TestContext.Current.CancellationToken)).GetProperty("error").GetString().ShouldBe("Task watched was stopped before completion");
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            var context = await _listener.GetContextAsync();
            var response = context.Response;
            var name = context.Request.Url!.AbsolutePath.TrimStart('/');
            if (name == "cut.wasm")
            {
                // The connection is lost in the middle of the body (fewer bytes than announced, then a reset).
                response.ContentType = "application/wasm";
                response.ContentLength64 = Modules.Addition.Length * 10;
                await response.OutputStream.WriteAsync(Modules.Addition, CancellationToken.None);
                response.Abort();
                continue;
            }

            (int Status, string? Type, byte[] Body) answer = name switch
            {
                "add.wasm" => (200, "application/wasm", Modules.Addition),
                "add.bin" => (200, "application/octet-stream", Modules.Addition),
                "page.html" => (200, "text/html", "<html></html>"u8.ToArray()),
                _ => (404, null, []),
            };
            response.StatusCode = answer.Status;
            response.ContentType = answer.Type;
            await response.OutputStream.WriteAsync(answer.Body, CancellationToken.None);
            response.Close();
        }
    }
}
