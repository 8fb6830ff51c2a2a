using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

using MQTTnet.Formatter;

namespace Propeller.Broker.Tests;

/// <summary>A private mosquitto for tests that need their own broker setup (password file, TLS, restarts): a temp
/// directory, a free loopback port, and a process this test owns and kills. Never touches the shared broker.</summary>
internal sealed class MosquittoProcess : IAsyncDisposable
{
    private readonly string _config;
    private Process? _process;

    private MosquittoProcess(string directory, int port, string config)
    {
        Directory = directory;
        Port = port;
        _config = config;
    }

    public string Directory { get; }

    public int Port { get; }

    public static string Executable => File.Exists("/usr/sbin/mosquitto") ? "/usr/sbin/mosquitto" : "mosquitto";

    /// <summary>Creates the directory and port; <paramref name="listenerConfig"/> gets the directory and returns extra
    /// configuration lines for the listener (e.g. TLS files it wrote there).</summary>
    public static async Task<MosquittoProcess> StartAsync(Func<string, string> listenerConfig, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "propeller-mosquitto-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(directory);
        var port = FreePort();
        var config = $"""
            user {Environment.UserName}
            persistence true
            persistence_location {directory}/
            log_dest file {directory}/mosquitto.log
            log_type all
            listener {port} 127.0.0.1
            {listenerConfig(directory)}
            """;
        var path = Path.Combine(directory, "mosquitto.conf");
        await File.WriteAllTextAsync(path, config, cancellationToken);
        var broker = new MosquittoProcess(directory, port, path);
        await broker.StartAsync(cancellationToken);
        return broker;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo(Executable, ["-c", _config])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        _process = Process.Start(info) ?? throw new InvalidOperationException("mosquitto did not start");
        _process.ErrorDataReceived += (_, _) => { };
        _process.OutputDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"mosquitto exited with {_process.ExitCode}: {ReadLog()}");
            }

            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port, cancellationToken);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50, cancellationToken);
            }
        }

        throw new TimeoutException($"mosquitto did not listen on {Port}: {ReadLog()}");
    }

    /// <summary>Stops the broker with SIGTERM (it saves its persistence file) and waits for it to exit.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_process is null || _process.HasExited)
        {
            return;
        }

        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill!.WaitForExitAsync(cancellationToken);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        await _process.WaitForExitAsync(timeout.Token);
        _process.Dispose();
        _process = null;
    }

    /// <summary>Kills the broker (SIGKILL: a crash; what it had not saved to its persistence file is lost).</summary>
    public async Task KillAsync(CancellationToken cancellationToken)
    {
        if (_process is null || _process.HasExited)
        {
            return;
        }

        _process.Kill();
        await _process.WaitForExitAsync(cancellationToken);
        _process.Dispose();
        _process = null;
    }

    public string Address => $"tcp://127.0.0.1:{Port}";

    public BrokerOptions Options(MqttProtocolVersion version, string clientId) => new()
    {
        Host = "127.0.0.1",
        Port = Port,
        ProtocolVersion = version,
        ClientId = clientId,
        ReconnectDelay = TimeSpan.FromMilliseconds(100),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>Makes mosquitto read its configuration, password file included, again (SIGHUP).</summary>
    public Task ReloadAsync(CancellationToken cancellationToken) => SignalAsync("HUP", cancellationToken);

    /// <summary>Sends <paramref name="signal"/> to the broker (HUP: read the configuration again; STOP: freeze it with
    /// every connection open; CONT: let it go on).</summary>
    public async Task SignalAsync(string signal, CancellationToken cancellationToken)
    {
        using var sender = Process.Start("kill", ["-" + signal, _process!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await sender!.WaitForExitAsync(cancellationToken);
    }

    public string ReadLog()
    {
        try
        {
            return File.ReadAllText(Path.Combine(Directory, "mosquitto.log"));
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync(TestContext.Current.CancellationToken);
        }

        _process?.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp directory left behind is harmless.
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
