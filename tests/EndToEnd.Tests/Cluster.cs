using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Npgsql;
using Propeller.Tests.Shared;

namespace Propeller.EndToEnd.Tests;

/// <summary>
/// A manager and proplets as real processes (the built propeller-manager.dll and propeller-proplet.dll) against the
/// shared PostgreSQL (tests/Shared/TestPostgres.cs) and mosquitto (PROPELLER_TEST_MQTT). Each cluster has an event store schema
/// of its own (the given prefix plus a random suffix, so two test runs on one database, e.g. two worktrees, never
/// share one), its own tenant and channel, and a free HTTP port, so clusters never see each other. Dispose kills every
/// process and drops the schema; the evidence of a failure is the processes' output, which every wait includes.
/// </summary>
internal sealed class Cluster : IAsyncDisposable
{
    public const string DefaultMqtt = "tcp://127.0.0.1:51883";

    private readonly List<ChildProcess> _processes = [];
    private readonly string _tenant = "e2e-" + Guid.NewGuid().ToString("N")[..10];
    private readonly List<HttpClient> _clients = [];
    private ChildProcess? _manager;
    private Dictionary<string, string> _managerEnv = [];

    private Cluster(string schema, string broker)
    {
        Schema = schema;
        Broker = broker;
    }

    /// <summary>The broker every process of this cluster connects to (<see cref="Mqtt"/> unless the test gave its own).</summary>
    public string Broker { get; }

    public string Schema { get; }

    /// <summary>The MQTT tenant of this cluster (its topics are m/{Tenant}/c/c1/...).</summary>
    public string Tenant => _tenant;

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    public IReadOnlyList<ChildProcess> Processes => _processes;

    public static string Mqtt => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } mqtt ? mqtt : DefaultMqtt;

    /// <summary>Starts the manager on a new schema named after <paramref name="schemaPrefix"/> and waits for
    /// /health/ready; every process connects to <paramref name="broker"/> (default: the shared one).</summary>
    public static async Task<Cluster> StartAsync(string schemaPrefix, IReadOnlyDictionary<string, string>? managerEnv, CancellationToken cancellationToken, string? broker = null)
    {
        var schema = $"{schemaPrefix}_{Guid.NewGuid():N}"[..(schemaPrefix.Length + 9)];
        await DropSchemaAsync(schema, cancellationToken);
        var cluster = new Cluster(schema, broker ?? Mqtt);
        var port = FreePort();
        cluster.Http.BaseAddress = new Uri($"http://127.0.0.1:{port}");
        cluster._managerEnv = await cluster.ManagerEnvironmentAsync(port, "manager-" + cluster._tenant, managerEnv);
        cluster._manager = cluster.Start("manager", Built("Manager", "propeller-manager.dll"), cluster._managerEnv);
        await cluster.WaitUntilReadyAsync(cluster.Http, "the manager", cancellationToken);
        return cluster;
    }

    /// <summary>
    /// Another manager node on this cluster's schema, tenant and channel (several nodes on one database, ADR 0014):
    /// its own HTTP port and MQTT client id, the first manager's settings otherwise plus <paramref name="extra"/>.
    /// </summary>
    public async Task<(HttpClient Http, ChildProcess Process)> StartManagerNodeAsync(string name, IReadOnlyDictionary<string, string>? extra, CancellationToken cancellationToken)
    {
        var port = FreePort();
        var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30), BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        _clients.Add(http);
        var env = await ManagerEnvironmentAsync(port, $"manager-{_tenant}-{name}", _managerEnv);
        foreach (var (key, value) in extra ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        var process = Start(name, Built("Manager", "propeller-manager.dll"), env);
        await WaitUntilReadyAsync(http, name, cancellationToken);
        return (http, process);
    }

    /// <summary>SIGKILLs the first manager (no goodbye: its broker session and its durable messages stay behind).</summary>
    public void KillManager() => _manager!.Kill();

    /// <summary>Starts the first manager again with the same settings (port, MQTT client id, schema) and waits until it is
    /// ready; killed first (SIGKILL), or stopped as a service manager stops it (SIGTERM) when <paramref name="graceful"/>.</summary>
    public async Task RestartManagerAsync(CancellationToken cancellationToken, bool graceful = false)
    {
        if (graceful)
        {
            await _manager!.TerminateAsync(TimeSpan.FromSeconds(30), cancellationToken);
        }
        else if (!_manager!.HasExited)
        {
            _manager.Kill();
        }

        _manager = Start("manager", Built("Manager", "propeller-manager.dll"), _managerEnv);
        await WaitUntilReadyAsync(Http, "the restarted manager", cancellationToken);
    }

    private async Task WaitUntilReadyAsync(HttpClient http, string what, CancellationToken cancellationToken) =>
        await WaitUntilAsync($"{what} to be ready", async () => (await http.GetAsync("/health/ready", cancellationToken)).IsSuccessStatusCode, TimeSpan.FromSeconds(90), cancellationToken);

    private async Task<Dictionary<string, string>> ManagerEnvironmentAsync(int port, string entityId, IReadOnlyDictionary<string, string>? extra)
    {
        var env = new Dictionary<string, string>
        {
            ["MANAGER_HTTP_HOST"] = "127.0.0.1",
            ["MANAGER_MQTT_ADDRESS"] = Broker,
            ["MANAGER_TENANT_ID"] = _tenant,
            ["MANAGER_CHANNEL_ID"] = "c1",
            ["EventStore__ConnectionString"] = await TestPostgres.ConnectionStringAsync(),
            ["EventStore__Schema"] = Schema,
            ["Logging__LogLevel__Default"] = "Warning",
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        env["MANAGER_HTTP_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        env["MANAGER_ENTITY_ID"] = entityId;
        return env;
    }

    /// <summary>Starts a proplet on this cluster's channel (a new id unless <paramref name="id"/> names one: a proplet
    /// started again) and waits until the manager lists it.</summary>
    public async Task<(string Id, ChildProcess Process)> StartPropletAsync(IReadOnlyDictionary<string, string>? extra, CancellationToken cancellationToken, string? id = null)
    {
        id ??= Guid.NewGuid().ToString();
        var env = new Dictionary<string, string>
        {
            ["PROPLET_MQTT_ADDRESS"] = Broker,
            ["PROPLET_TENANT_ID"] = _tenant,
            ["PROPLET_CHANNEL_ID"] = "c1",
            ["PROPLET_ENTITY_ID"] = id,
            ["PROPLET_API_KEY"] = "e2e",
            ["PROPLET_LIVELINESS_INTERVAL"] = "1",
            ["PROPLET_METRICS_INTERVAL"] = "0",
            ["PROPLET_METRICS_ENABLED"] = "false",
            ["PROPLET_MQTT_KEEP_ALIVE"] = "2",
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        var process = Start("proplet-" + id[..8], Built("Edge", "propeller-proplet.dll"), env);
        await WaitUntilAsync(
            $"proplet {id} to be listed",
            async () => (await Http.GetStringAsync("/proplets", cancellationToken)).Contains($"\"id\":\"{id}\"", StringComparison.Ordinal),
            TimeSpan.FromSeconds(60),
            cancellationToken);
        return (id, process);
    }

    /// <summary>Starts a propeller-proxy on this cluster's channel and waits until its /health says MQTT is connected;
    /// returns its HTTP base address.</summary>
    public async Task<(Uri Address, ChildProcess Process)> StartProxyAsync(IReadOnlyDictionary<string, string>? extra, CancellationToken cancellationToken)
    {
        var port = FreePort();
        var env = new Dictionary<string, string>
        {
            ["PROXY_MQTT_ADDRESS"] = Broker,
            ["PROXY_TENANT_ID"] = _tenant,
            ["PROXY_CHANNEL_ID"] = "c1",
            ["PROXY_ENTITY_ID"] = "proxy-" + _tenant,
            ["PROXY_API_KEY"] = "e2e",
            ["PROXY_HTTP_HOST"] = "127.0.0.1",
            ["PROXY_HTTP_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        var process = Start("proxy", Built("Proxy", "propeller-proxy.dll"), env);
        var address = new Uri($"http://127.0.0.1:{port}");
        await WaitUntilAsync(
            "the proxy to connect",
            async () => (await Http.GetStringAsync(new Uri(address, "/health"), cancellationToken)).Contains("\"mqtt_connected\":true", StringComparison.Ordinal),
            TimeSpan.FromSeconds(60),
            cancellationToken);
        return (address, process);
    }

    public async Task<string> CreateTaskAsync(object body, CancellationToken cancellationToken)
    {
        using var response = await Http.PostAsJsonAsync("/tasks", body, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        response.StatusCode.ShouldBe(HttpStatusCode.Created, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    public async Task StartTaskAsync(string id, CancellationToken cancellationToken)
    {
        using var response = await Http.PostAsync($"/tasks/{id}/start", null, cancellationToken);
        response.IsSuccessStatusCode.ShouldBeTrue(await response.Content.ReadAsStringAsync(cancellationToken));
    }

    public async Task<JsonElement> GetTaskAsync(string id, CancellationToken cancellationToken) =>
        JsonDocument.Parse(await Http.GetStringAsync($"/tasks/{id}", cancellationToken)).RootElement.Clone();

    /// <summary>Polls the task until <paramref name="done"/> holds (generous timeout; failures show every log).</summary>
    public async Task<JsonElement> WaitForTaskAsync(string id, Func<JsonElement, bool> done, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        JsonElement task = default;
        await WaitUntilAsync(
            $"task {id}",
            async () => done(task = await GetTaskAsync(id, cancellationToken)),
            timeout ?? TimeSpan.FromSeconds(60),
            cancellationToken,
            () => task.ValueKind == JsonValueKind.Undefined ? "" : task.GetRawText());
        return task;
    }

    public async Task<JsonElement> HistoryAsync(string id, CancellationToken cancellationToken) =>
        JsonDocument.Parse(await Http.GetStringAsync($"/tasks/{id}/history", cancellationToken)).RootElement.Clone();

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            process.Dispose();
        }

        Http.Dispose();
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        await DropSchemaAsync(Schema, CancellationToken.None);
    }

    private static async Task DropSchemaAsync(string schema, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(await TestPostgres.ConnectionStringAsync());
        await connection.OpenAsync(cancellationToken);
        await using var drop = new NpgsqlCommand($"drop schema if exists \"{schema}\" cascade", connection);
        await drop.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task WaitUntilAsync(string what, Func<Task<bool>> condition, TimeSpan timeout, CancellationToken cancellationToken, Func<string>? state = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (HttpRequestException ex)
            {
                last = ex;
            }

            if (_processes.FirstOrDefault(p => p.HasExited && !p.Killed) is { } dead)
            {
                throw new InvalidOperationException($"{dead.Name} exited while waiting for {what}:\n{Logs()}");
            }

            await Task.Delay(100, cancellationToken);
        }

        throw new TimeoutException($"timed out waiting for {what} ({last?.Message}) {state?.Invoke()}\n{Logs()}");
    }

    public string Logs() => string.Join("\n", _processes.Select(p => $"--- {p.Name}\n{Tail(p.Output)}"));

    private static string Tail(string text) => text.Length <= 6000 ? text : text[^6000..];

    private ChildProcess Start(string name, string dll, Dictionary<string, string> env)
    {
        var process = new ChildProcess(name, dll, env);
        _processes.Add(process);
        return process;
    }

    /// <summary>The host dll built in the same configuration as this test assembly (scripts/test.sh builds Release).</summary>
    internal static string Built(string project, string dll)
    {
        var here = AppContext.BaseDirectory;
        var configuration = here.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var dir = new DirectoryInfo(here);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Propeller.sln")))
        {
            dir = dir.Parent;
        }

        var path = Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Propeller.sln not found above " + here), "src", project, "bin", configuration, "net10.0", dll);
        return File.Exists(path) ? path : throw new FileNotFoundException($"{path} is not built (dotnet build -c {configuration})", path);
    }

    /// <summary>A port nothing listens on now.</summary>
    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
