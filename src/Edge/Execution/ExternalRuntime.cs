using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Propeller.Edge.Configuration;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Execution;

/// <summary>
/// PROPLET_EXTERNAL_WASM_RUNTIME (spec §6): runs the binary in a child process with the original's argument shape,
/// <c>run [--invoke NAME] CLI_ARGS... [--env K=V]... FILE INPUTS...</c> (wasmtime's, and `propeller-proplet run`'s),
/// without the limit flags of <see cref="TaskLimits"/>. Output is read while the child runs and bounded; the task
/// timeout and a stop kill the process tree.
/// </summary>
public sealed class ExternalRuntime(string executable, PropletSettings settings, ILogger<ExternalRuntime> logger) : IWasmRuntime
{
    /// <summary>How long the output is waited for once the child has exited.</summary>
    internal static readonly TimeSpan OutputGrace = TimeSpan.FromSeconds(2);

    public string Name => settings.ExternalWasmRuntime ?? executable;

    public string Executable => executable;

    /// <summary>An external runtime runs every binary as a process under the task's time limit.</summary>
    public bool ServesHttpProxy(byte[] binary) => false;

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

    /// <summary>The child's arguments for a task whose binary was written to <paramref name="file"/>.</summary>
    public static List<string> Arguments(StartRequest request, string file)
    {
        ArgumentNullException.ThrowIfNull(request);
        var args = new List<string> { "run" };
        var customExport = request.Name is { Length: > 0 } name && name != "_start" && !name.StartsWith("fl-round-", StringComparison.Ordinal);
        if (customExport && !request.CliArgs.Contains("--invoke"))
        {
            args.Add("--invoke");
            args.Add(request.Name);
        }

        // The limit flags are the proplet's (TaskLimits): the timeout it enforces itself, fuel and memory do not apply to a
        // child, and the wasmtime CLI would refuse them as unexpected arguments.
        args.AddRange(TaskLimits.Without(request.CliArgs));
        foreach (var (key, value) in request.Env)
        {
            args.Add("--env");
            args.Add($"{key}={value}");
        }

        args.Add(file);
        args.AddRange(request.Inputs);
        return args;
    }

    public async Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(binary);
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
            foreach (var arg in Arguments(task.Request, file))
            {
                info.ArgumentList.Add(arg);
            }

            foreach (var (key, value) in task.Request.Env)
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

            process.StandardInput.Close();
            var (stdout, stdoutDone) = BoundedCapture.Start(process.StandardOutput.BaseStream, settings.OutputLimit);
            var (stderr, stderrDone) = BoundedCapture.Start(process.StandardError.BaseStream, settings.OutputLimit);
            task.Attach(process);
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
            }

            if (InProcessRuntime.Stopped(task) is { } stopped)
            {
                return stopped;
            }

            if (stdout.Total > settings.OutputLimit)
            {
                EdgeLog.OutputTruncated(logger, task.Id, stdout.Total, settings.OutputLimit);
            }

            return process.ExitCode == 0
                ? TaskOutcome.Success(stdout.ToString())
                : TaskOutcome.Failure($"Process exited with status: exit status: {process.ExitCode}, stderr: {stderr}");
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

    private static string SafeName(string id) => string.Concat(id.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_'));
}
