using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Tasks;
using Propeller.WasmHost.Components;

namespace Propeller.Edge.Execution;

/// <summary>
/// `propeller-proplet serve [-S OPTION]... [--addr HOST:PORT] [--env NAME[=VALUE]]... FILE.wasm`, shaped like
/// `wasmtime serve` (what the original proplet's host runtime runs an HTTP proxy component with, spec §6): serves a
/// <c>wasi:http/incoming-handler</c> component on HOST:PORT (default 0.0.0.0:8080) as the proplet serves one (a fresh
/// instance per request, ADR 0015) until SIGTERM or SIGINT. Prints "Serving HTTP on http://HOST:PORT/" to stderr once it
/// listens. <c>-S</c> options (WASI features: <c>-Shttp</c> and the like) are accepted and change nothing: the proxy world
/// is all a served component gets. Exits 0 when stopped, 1 when it cannot serve (not a proxy component, the port taken),
/// 2 on bad arguments.
/// </summary>
public static class ServeCommand
{
    /// <summary>The option lines of the usage text, after "usage: PROGRAM ".</summary>
    public const string OptionsUsage = "[-S OPTION]... [--addr HOST:PORT] [--env NAME[=VALUE]]... FILE.wasm";

    public static async Task<int> RunAsync(string program, string[] args, TextWriter stderr, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stderr);
        ArgumentNullException.ThrowIfNull(loggers);
        var usage = $"usage: {program} {OptionsUsage}";
        var address = "0.0.0.0:8080";
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        string? file = null;
        try
        {
            for (var i = 0; i < args.Length; i++)
            {
                var (option, inline) = args[i].StartsWith("--", StringComparison.Ordinal) && args[i].IndexOf('=', StringComparison.Ordinal) is > 2 and var eq
                    ? (args[i][..eq], args[i][(eq + 1)..])
                    : (args[i], null);
                string Value() => inline ?? (i + 1 < args.Length ? args[++i] : throw new FormatException($"{option} needs a value"));
                switch (option)
                {
                    case "-S":
                        Value();
                        break;
                    case var feature when feature.StartsWith("-S", StringComparison.Ordinal):
                        break;
                    case "--addr":
                        address = Value();
                        break;
                    case "--env":
                        var pair = Value();
                        var split = pair.IndexOf('=', StringComparison.Ordinal);
                        if (split == 0 || pair.Length == 0)
                        {
                            throw new FormatException($"--env {pair}: expected NAME=VALUE or NAME");
                        }

                        // NAME alone passes this process's value on, as wasmtime's does.
                        if (split < 0)
                        {
                            if (Environment.GetEnvironmentVariable(pair) is { } inherited)
                            {
                                env[pair] = inherited;
                            }
                        }
                        else
                        {
                            env[pair[..split]] = pair[(split + 1)..];
                        }

                        break;
                    case var other when other.StartsWith('-') && other.Length > 1:
                        throw new FormatException($"unknown option {other}");
                    default:
                        file = file is null ? args[i] : throw new FormatException($"unexpected argument {args[i]} after {file}");
                        break;
                }
            }
        }
        catch (FormatException e)
        {
            await stderr.WriteLineAsync($"error: {e.Message}");
            await stderr.WriteLineAsync(usage);
            return 2;
        }

        var (host, port, bind, addressError) = HttpProxyServer.ParseAddress(address);
        if (file is null || addressError is not null)
        {
            await stderr.WriteLineAsync(addressError is null ? usage : $"error: {addressError}");
            return 2;
        }

        byte[] binary;
        try
        {
            binary = await File.ReadAllBytesAsync(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            await stderr.WriteLineAsync($"error: {e.Message}");
            return 1;
        }

        if (!WasmBinary.IsHttpProxy(binary))
        {
            await stderr.WriteLineAsync($"error: {file} is not an HTTP proxy component (a component exporting wasi:http/incoming-handler)");
            return 1;
        }

        var settings = new PropletSettings { HttpEnabled = true, TenantId = "", ChannelId = "", EntityId = "serve", ApiKey = "" };
        using var runtime = new InProcessRuntime(settings, loggers.CreateLogger<InProcessRuntime>()) { ProxyAddress = bind };
        var message = new StartMessage { Id = "serve", Name = Path.GetFileName(file), CliArgs = ["--addr", address], Env = env };
        using var task = new RunningTask(new StartRequest(message, TaskLimits.Defaults(settings), MonitoringProfile.Standard));
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            task.Abort(StopReason.Stopped);
        }

        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        var run = runtime.RunAsync(task, binary, CancellationToken.None);
        if (await Task.WhenAny(run, task.Started) != run)
        {
            await stderr.WriteLineAsync($"Serving HTTP on http://{host}:{port}/");
        }

        TaskOutcome outcome;
        try
        {
            outcome = await run;
        }
        catch (OperationCanceledException) when (task.Aborted.IsCancellationRequested)
        {
            return 0; // stopped while it was starting to listen
        }

        if (task.Reason == StopReason.Stopped)
        {
            return 0;
        }

        await stderr.WriteLineAsync($"error: {outcome.Error ?? "the server ended"}");
        return 1;
    }
}
