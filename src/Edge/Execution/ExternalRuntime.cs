using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Propeller.Edge.Configuration;
using Propeller.Edge.Tasks;
using Propeller.WasmHost.Components;

namespace Propeller.Edge.Execution;

/// <summary>
/// PROPLET_EXTERNAL_WASM_RUNTIME (spec §6): runs the binary in a child process with the original's argument shape,
/// <c>run [--invoke NAME] CLI_ARGS... [--env K=V]... FILE INPUTS...</c> (wasmtime's, and `propeller-proplet run`'s),
/// without the limit flags of <see cref="TaskLimits"/>, and with PROPLET_ID in the env. Output is read while the child
/// runs and bounded; the task timeout and a stop kill the process tree. An HTTP proxy component is served instead
/// (<c>serve -Shttp --addr 0.0.0.0:PORT …</c>, <see cref="ServeArguments"/>), as the original's host runtime does.
/// </summary>
public sealed class ExternalRuntime(string executable, PropletSettings settings, ILogger<ExternalRuntime> logger) : IWasmRuntime
{
    /// <summary>How long the output is waited for once the child has exited.</summary>
    internal static readonly TimeSpan OutputGrace = TimeSpan.FromSeconds(2);

    public string Name => settings.ExternalWasmRuntime ?? executable;

    public string Executable => executable;

    /// <summary>How long a served proxy's child is given to listen before it is reported started anyway (as the original
    /// reports it at once).</summary>
    private static readonly TimeSpan ListenWait = TimeSpan.FromSeconds(30);

    /// <summary>
    /// An HTTP proxy component (spec §6) is served by the runtime (<c>serve</c>, <see cref="ServeArguments"/>): "started at
    /// port N" once it listens, then it runs until stopped, outside the task's time limit. No PROPLET_HTTP_ENABLED check,
    /// as the original's host runtime.
    /// </summary>
    public bool ServesHttpProxy(byte[] binary) => WasmBinary.IsHttpProxy(binary);

    /// <summary>The original's host runtime has no latent tasks either (spec §2.10).</summary>
    public LatentPreparation Prepare(RunningTask task, byte[] binary) => LatentPreparation.Failed("latent tasks are not supported by this runtime");

    public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken) =>
        Task.FromResult(TaskOutcome.Failure("latent task invocation is not supported by this runtime"));

    /// <summary>Finds the runtime: a value with a path separator must exist; a bare name is looked up on PATH.</summary>
    public static string? Resolve(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Contains('/', StringComparison.Ordinal) || value.Contains('\\', StringComparison.Ordinal))
        {
            return File.Exists(value) ? Path.GetFullPath(value) : null;
        }

        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, value);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>
    /// A component as the original's host runtime tells one (spec §2.3): the wasm magic, then a component's version and
    /// layer (bytes 4–7 <c>0D 00 01 00</c>, or the pre-release layer byte <c>0A</c>), not a core module's <c>01 00 00 00</c>.
    /// </summary>
    public static bool IsComponent(ReadOnlySpan<byte> binary) =>
        binary.Length >= 8 && binary[..4].SequenceEqual("\0asm"u8) && binary[4] is 0x0D or 0x0A && binary[5..8].SequenceEqual((ReadOnlySpan<byte>)[0x00, 0x01, 0x00]);

    /// <summary>
    /// The child's arguments for a task whose binary was written to <paramref name="file"/>. A component's custom export
    /// is called with wasmtime's call expression, its inputs as WAVE literals inside it (<c>--invoke "add(1, 2)"</c>, spec
    /// §6), and gets no positional inputs; a core module's is <c>--invoke NAME</c> with the inputs after the file.
    /// </summary>
    public static List<string> Arguments(StartRequest request, string file, bool component, string propletId)
    {
        ArgumentNullException.ThrowIfNull(request);
        var args = new List<string> { "run" };
        var customExport = request.Name is { Length: > 0 } name && name != "_start" && !name.StartsWith("fl-round-", StringComparison.Ordinal)
            && !request.CliArgs.Contains("--invoke");
        if (customExport)
        {
            args.Add("--invoke");
            args.Add(component ? $"{request.Name}({string.Join(", ", request.Inputs)})" : request.Name);
        }

        // The limit flags are the proplet's (TaskLimits): the timeout it enforces itself, fuel and memory do not apply to a
        // child, and the wasmtime CLI would refuse them as unexpected arguments.
        args.AddRange(TaskLimits.Without(request.CliArgs));
        foreach (var (key, value) in TaskEnvironment(request, propletId))
        {
            args.Add("--env");
            args.Add($"{key}={value}");
        }

        args.Add(file);
        if (!(component && customExport))
        {
            args.AddRange(request.Inputs);
        }

        return args;
    }

    /// <summary>
    /// The child's arguments for an HTTP proxy component written to <paramref name="file"/> (spec §6): <c>serve</c>,
    /// <c>-Shttp</c> unless cli_args has it, <c>--addr 0.0.0.0:PORT</c> unless cli_args has an <c>--addr</c>, the cli_args
    /// (without the limit flags, and with a <c>--port N</c>, which the in-process runtime reads and <c>wasmtime serve</c>
    /// refuses, turned into that <c>--addr</c>), <c>--env K=V</c> for each variable, the file.
    /// </summary>
    public static List<string> ServeArguments(StartRequest request, string file, int port, string propletId)
    {
        ArgumentNullException.ThrowIfNull(request);
        var cli = new List<string>();
        var given = TaskLimits.Without(request.CliArgs);
        for (var i = 0; i < given.Count; i++)
        {
            if (given[i] == "--port")
            {
                i++;
            }
            else if (!given[i].StartsWith("--port=", StringComparison.Ordinal))
            {
                cli.Add(given[i]);
            }
        }

        var args = new List<string> { "serve" };
        if (!cli.Contains("-Shttp"))
        {
            args.Add("-Shttp");
        }

        if (!cli.Any(a => a == "--addr" || a.StartsWith("--addr=", StringComparison.Ordinal)))
        {
            args.Add("--addr");
            args.Add($"0.0.0.0:{port.ToString(CultureInfo.InvariantCulture)}");
        }

        args.AddRange(cli);
        foreach (var (key, value) in TaskEnvironment(request, propletId))
        {
            args.Add("--env");
            args.Add($"{key}={value}");
        }

        args.Add(file);
        return args;
    }

    /// <summary>The port a served proxy gets: its cli_args' (<c>--port</c>, <c>--addr</c>), else the first free one of
    /// PROPLET_HTTP_PROXY_PORT and the 99 after it (probed, and released for the child to take).</summary>
    private (int Port, string? Error) ProxyPort(StartRequest request)
    {
        var (requested, error) = HttpProxyServer.RequestedPort(request.CliArgs);
        if (error is not null || requested is { })
        {
            return (requested ?? 0, error);
        }

        var last = Math.Min(settings.HttpProxyPort + HttpProxyServer.RangeSize - 1, 65_535);
        for (var candidate = settings.HttpProxyPort; candidate <= last; candidate++)
        {
            if (HttpProxyServer.Free(candidate))
            {
                return (candidate, null);
            }
        }

        return (0, $"No available port found in range {settings.HttpProxyPort}-{last}");
    }

    /// <summary>
    /// Reports a served proxy started ("started at port N") once its port takes a connection: at once, as the original
    /// does, would send clients to a port the runtime is still compiling for. Not when the child exits first (its exit is
    /// the task's outcome) or the task ends; after <see cref="ListenWait"/> without either, it is reported anyway.
    /// </summary>
    private async Task ReportListeningAsync(RunningTask task, Process process, int port)
    {
        var deadline = Stopwatch.StartNew();
        while (!task.Aborted.IsCancellationRequested && !process.HasExited)
        {
            if (deadline.Elapsed >= ListenWait)
            {
                EdgeLog.ProxyNotListening(logger, task.Id, port, ListenWait.TotalSeconds);
                break;
            }

            using var client = new System.Net.Sockets.TcpClient();
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(task.Aborted);
            attempt.CancelAfter(TimeSpan.FromSeconds(1));
            try
            {
                await client.ConnectAsync(ListenAddress(task.Request.CliArgs), port, attempt.Token);
                break;
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or OperationCanceledException)
            {
                await Task.Delay(50, CancellationToken.None);
            }
        }

        if (!task.Aborted.IsCancellationRequested && !process.HasExited)
        {
            EdgeLog.HttpProxyStarted(logger, task.Id, port);
            task.ReportStarted($"started at port {port.ToString(CultureInfo.InvariantCulture)}");
        }
    }

    /// <summary>Where a served proxy is reached from here: the host of an <c>--addr HOST:N</c> in cli_args when it names
    /// one address, else the loopback (the runtime listens on all of them).</summary>
    private static System.Net.IPAddress ListenAddress(IReadOnlyList<string> cliArgs) =>
        HttpProxyServer.RequestedHost(cliArgs) is { } host && !host.Equals(System.Net.IPAddress.Any) && !host.Equals(System.Net.IPAddress.IPv6Any)
            ? host
            : System.Net.IPAddress.Loopback;

    public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(binary);
        var proxy = ServesHttpProxy(binary);
        var port = 0;
        if (proxy)
        {
            (port, var portError) = ProxyPort(task.Request);
            if (portError is not null)
            {
                return TaskOutcome.Failure(portError);
            }
        }
        // A directory of its own (mode 0700): task ids that differ only in characters SafeName replaces do not share a
        // file, and no other user can put a file or a link where the binary is written.
        var directory = Directory.CreateTempSubdirectory("proplet_");
        var file = Path.Combine(directory.FullName, $"proplet_{SafeName(task.Id)}.wasm");
        try
        {
            await File.WriteAllBytesAsync(file, binary, cancellationToken);
            var info = new ProcessStartInfo(executable)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in proxy ? ServeArguments(task.Request, file, port, settings.EntityId) : Arguments(task.Request, file, IsComponent(binary), settings.EntityId))
            {
                info.ArgumentList.Add(arg);
            }

            foreach (var (key, value) in TaskEnvironment(task.Request, settings.EntityId))
            {
                info.Environment[key] = value;
            }

            using var process = new Process { StartInfo = info };
            try
            {
                process.Start();
            }
            catch (System.ComponentModel.Win32Exception ex)
            {
                return TaskOutcome.Failure($"Failed to start the external runtime '{executable}': {ex.Message}");
            }

            // Watched before anything else: a child that ends before its pidfd is opened is reported by its exit code.
            using var status = ChildStatus.Watch(process.Id);
            process.StandardInput.Close();
            var (stdout, stdoutDone) = BoundedCapture.Start(process.StandardOutput.BaseStream, settings.OutputLimit);
            var (stderr, stderrDone) = BoundedCapture.Start(process.StandardError.BaseStream, settings.OutputLimit);
            // The outcome is the state's at the child's exit: a stop or timeout is the outcome when it found the child
            // running (its kill ends it), not when it came after the child had exited by itself (while its output is
            // waited for below). A child that exits now reads as exited here (HasExited reaps it).
            var endedRunning = 0;
            using var ending = task.Aborted.Register(() =>
            {
                if (!process.HasExited)
                {
                    Volatile.Write(ref endedRunning, 1);
                }
            });
            task.Attach(process);
            var listening = proxy ? ReportListeningAsync(task, process, port) : Task.CompletedTask;
            try
            {
                await process.WaitForExitAsync(CancellationToken.None);
                try
                {
                    // A process the child left running (`cmd &`) keeps the pipes open after the child exits, and the
                    // process-tree kill of a stop or timeout can no longer find it: the output is waited for a while only.
                    await Task.WhenAll(stdoutDone, stderrDone).WaitAsync(OutputGrace, CancellationToken.None);
                }
                catch (TimeoutException)
                {
                    EdgeLog.OutputHeldOpen(logger, task.Id);
                }
            }
            finally
            {
                task.Attach((Process?)null);
                await listening;
            }

            if (Volatile.Read(ref endedRunning) == 1 && InProcessRuntime.Stopped(task) is { } stopped)
            {
                return stopped;
            }

            if (stdout.Total > settings.OutputLimit)
            {
                EdgeLog.OutputTruncated(logger, task.Id, stdout.Total, settings.OutputLimit);
            }

            return process.ExitCode == 0
                ? TaskOutcome.Success(stdout.ToString())
                : TaskOutcome.Failure($"Process exited with status: {status.Describe(process.ExitCode)}, stderr: {stderr}");
        }
        finally
        {
            try
            {
                directory.Delete(recursive: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // best effort, like the original
            }
        }
    }

    /// <summary>The task env plus PROPLET_ID (this proplet's id) unless the task sets one, as every task gets it (spec
    /// §2.1 step 13): given to the child both as <c>--env</c> flags (to the guest) and in its environment.</summary>
    private static List<KeyValuePair<string, string>> TaskEnvironment(StartRequest request, string propletId)
    {
        var env = request.Env.ToList();
        if (!request.Env.ContainsKey("PROPLET_ID"))
        {
            env.Add(new("PROPLET_ID", propletId));
        }

        return env;
    }

    /// <summary><paramref name="id"/> as a file name part: ASCII letters, digits, '-' and '_', at most 200 of them (a file
    /// name has 255 bytes: an id of ~243 characters made writing the binary fail, "internal proplet error"). Cut ids may
    /// share a name; each run's directory is its own.</summary>
    private static string SafeName(string id) => string.Concat(id.Take(200).Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_'));
}
