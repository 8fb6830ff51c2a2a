using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Npgsql;
using Propeller.Bench.EndToEnd;
using Propeller.Bench.Support;

namespace Propeller.Bench.Manager;

/// <summary>
/// `manager-startup` (issue 15: "manager ready in under 3 s on an existing database"): the built propeller-manager
/// started as a process, the time from the process start to the first 200 from /health/ready (PostgreSQL, broker and
/// projections checked) and then to the answer of the first POST /tasks, on a schema an earlier start already
/// migrated. Two configurations, alternating round by round so the machine's load falls on both alike: Wolverine in
/// Solo mode (the reference) and in Balanced mode (ADR 0014); medians and the ratio to the reference (the figures of
/// our retired pipeline, measured the same way before its deletion, are in docs/performance.md). Options: --rounds N (5).
/// </summary>
internal static class ManagerStartupBenchmark
{
    private static readonly (string Name, Dictionary<string, string> Settings)[] Variants =
    [
        ("solo", new() { ["MANAGER_DURABILITY_MODE"] = "solo" }),
        ("balanced", new() { ["MANAGER_DURABILITY_MODE"] = "balanced" }),
    ];

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--rounds"]);
        var rounds = ManagerBenchmark.Option(args, "--rounds", 5);
        var dll = EndToEndBenchmark.HostDll("Manager", "propeller-manager.dll");
        var ready = Variants.ToDictionary(v => v.Name, _ => new List<double>(), StringComparer.Ordinal);
        var first = Variants.ToDictionary(v => v.Name, _ => new List<double>(), StringComparer.Ordinal);

        // Round 0 creates each schema (not measured): the measured starts find an existing database.
        for (var round = 0; round <= rounds; round++)
        {
            foreach (var (name, settings) in round % 2 == 0 ? Variants : Variants.Reverse())
            {
                var (readyMs, firstMs) = await StartOnceAsync(dll, "bench_startup_" + name.Replace('-', '_'), settings, dropSchema: round == 0, cancellationToken);
                if (round > 0)
                {
                    ready[name].Add(readyMs);
                    first[name].Add(firstMs);
                    Console.Error.WriteLine(FormattableString.Invariant($"# round {round} {name}: ready {readyMs:F0} ms, first command {firstMs:F0} ms"));
                }
            }
        }

        double Median(List<double> values) => ManagerBenchmark.Percentile([.. values.Order()], 0.5);
        var reference = Median(ready["solo"]);
        foreach (var (name, _) in Variants)
        {
            Console.WriteLine(FormattableString.Invariant(
                $"manager-startup case={name} rounds={rounds} ready_median_ms={Median(ready[name]):F0} ready_min_ms={ready[name].Min():F0} ready_max_ms={ready[name].Max():F0} first_command_median_ms={Median(first[name]):F0} ratio_to_solo={Median(ready[name]) / reference:F2}"));
        }

        return 0;
    }

    private static async Task<(double ReadyMs, double FirstCommandMs)> StartOnceAsync(
        string dll, string schema, Dictionary<string, string> settings, bool dropSchema, CancellationToken cancellationToken)
    {
        if (dropSchema)
        {
            await using var dataSource = NpgsqlDataSource.Create(BenchManager.Database);
            await using var drop = dataSource.CreateCommand($"drop schema if exists {schema} cascade");
            await drop.ExecuteNonQueryAsync(cancellationToken);
        }

        var port = FreePort();
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(dll);
        info.Environment["MANAGER_HTTP_HOST"] = "127.0.0.1";
        info.Environment["MANAGER_HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture);
        info.Environment["MANAGER_MQTT_ADDRESS"] = Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } m ? m : "tcp://127.0.0.1:51883";
        info.Environment["MANAGER_TENANT_ID"] = "startup-" + schema; // one tenant per database: no other database's node shares its MQTT share group
        info.Environment["MANAGER_ENTITY_ID"] = "manager-startup-" + schema;
        info.Environment["MANAGER_MQTT_QOS"] = "1";
        info.Environment["EventStore__ConnectionString"] = BenchManager.Database;
        info.Environment["EventStore__Schema"] = schema;
        info.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (key, value) in settings)
        {
            info.Environment[key] = value;
        }

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        var output = new StringBuilder();
        var clock = Stopwatch.StartNew();
        Process? process = null;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + dll);
            process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
            process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            while (!await ReadyAsync(http, cancellationToken))
            {
                if (process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(120))
                {
                    throw new BenchFailedException($"the manager ({schema}) did not become ready:\n{Captured(output)}");
                }

                await Task.Delay(10, cancellationToken);
            }

            var readyMs = clock.Elapsed.TotalMilliseconds;
            try
            {
                // The status only (no JSON parsed inside the clock: this process's first parse would add its own JIT).
                using var created = await http.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), cancellationToken);
                if (!created.IsSuccessStatusCode)
                {
                    throw new BenchFailedException($"the manager ({schema}) answered POST /tasks with {(int)created.StatusCode}: {await created.Content.ReadAsStringAsync(cancellationToken)}");
                }
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // HttpClient's own timeout (not Ctrl+C): a TaskCanceledException Program would not take for an interrupt.
                throw new BenchFailedException($"the manager ({schema}) was ready but did not answer POST /tasks within {http.Timeout.TotalSeconds:F0} s:\n{Captured(output)}");
            }
            catch (HttpRequestException e)
            {
                throw new BenchFailedException($"the manager ({schema}) was ready but POST /tasks failed ({e.Message}):\n{Captured(output)}");
            }

            return (readyMs, clock.Elapsed.TotalMilliseconds - readyMs);
        }
        finally
        {
            await StopAsync(process);
        }
    }

    /// <summary>
    /// SIGTERM first: a graceful stop, so a Balanced node deregisters instead of leaving a stale node behind; then, if it
    /// has not ended within 30 s, the kill. Not cancellable: Ctrl+C must not leave a manager running.
    /// </summary>
    private static async Task StopAsync(Process? process)
    {
        if (process is null)
        {
            return;
        }

        try
        {
            // .NET has no API for a signal but SIGKILL (Process.Kill), so libc's kill(2); a failure (the process has
            // just ended: ESRCH) leaves the kill below to make sure.
            if (!process.HasExited && Kill(process.Id, SigTerm) == 0)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await process.WaitForExitAsync(timeout.Token);
            }
        }
        catch (OperationCanceledException)
        {
            // Still running after 30 s: killed below.
        }
        finally
        {
            ChildProcess.Stop(process);
        }
    }

    /// <summary>SIGTERM's number on Linux (and macOS).</summary>
    private const int SigTerm = 15;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Kill(int pid, int signal);

    /// <summary>
    /// Whether /health/ready answers a success; not yet listening, or no answer within the client's timeout (a
    /// TaskCanceledException that is not Ctrl+C's), is a no: the caller's deadline and exit check decide the failure.
    /// </summary>
    private static async Task<bool> ReadyAsync(HttpClient http, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await http.GetAsync("/health/ready", cancellationToken);
            return response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    private static string Captured(StringBuilder output)
    {
        lock (output)
        {
            return output.ToString();
        }
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
