using System.Diagnostics;
using System.Text;

namespace Propeller.EndToEnd.Tests;

/// <summary>A built host (`dotnet X.dll`) started as a child process, its output kept for assertions and failures.</summary>
internal sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    public ChildProcess(string name, string dll, IReadOnlyDictionary<string, string> environment)
    {
        Name = name;
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        _process = new Process { StartInfo = info };
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }

    public bool HasExited => _process.HasExited;

    /// <summary>True once the test killed it on purpose.</summary>
    public bool Killed { get; private set; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>SIGKILL: no DISCONNECT, no goodbye; the broker publishes the Last Will.</summary>
    public void Kill()
    {
        Killed = true;
        try
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    /// <summary>SIGTERM, as a service manager stops it: the host shuts down on its own (a proplet ends its tasks, says
    /// "offline" and disconnects); SIGKILL when it has not exited within <paramref name="grace"/>.</summary>
    public async Task TerminateAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        Killed = true;
        try
        {
            await SignalAsync("TERM");
            await _process.WaitForExitAsync(cancellationToken).WaitAsync(grace, cancellationToken);
        }
        catch (TimeoutException)
        {
            Append($"(test: no exit {grace.TotalSeconds} s after SIGTERM; killed)");
            Kill();
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    /// <summary>Sends <paramref name="signal"/> (TERM to stop it, STOP to freeze it where it is, CONT to let it go on).</summary>
    public async Task SignalAsync(string signal)
    {
        using var sender = Process.Start("kill", ["-" + signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await sender.WaitForExitAsync(CancellationToken.None);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Kill();
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
