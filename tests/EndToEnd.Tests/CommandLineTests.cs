using System.Diagnostics;

namespace Propeller.EndToEnd.Tests;

/// <summary>The propeller-proplet executable itself: the local `run` command and startup validation.</summary>
public sealed class CommandLineTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("proplet-cli");

    public void Dispose() => _dir.Delete(true);

    [Fact]
    public async Task GivenRunWithInvoke_WhenTheAdditionModuleIsCalled_ThenItPrints42()
    {
        var file = Path.Combine(_dir.FullName, "add.wasm");
        await File.WriteAllBytesAsync(file, Modules.Addition, TestContext.Current.CancellationToken);

        var (code, stdout, _) = await RunAsync(["run", "--invoke", "main", file, "10", "32"], []);

        code.ShouldBe(0);
        stdout.ShouldBe("42\n");
    }

    [Fact]
    public async Task GivenRunOfAWasiProgram_WhenItPrints_ThenItsOutputAndExitCodeAreThePrograms()
    {
        var hello = Path.Combine(_dir.FullName, "hello.wasm");
        var exit3 = Path.Combine(_dir.FullName, "exit3.wasm");
        await File.WriteAllBytesAsync(hello, Modules.Hello, TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(exit3, Modules.ExitThree, TestContext.Current.CancellationToken);

        (await RunAsync(["run", hello], [])).ShouldBe((0, "hello from wasi\n", ""));
        (await RunAsync(["run", exit3], [])).Code.ShouldBe(3);
        var usage = await RunAsync(["run", "--fuel", "lots", hello], []);
        usage.Code.ShouldBe(2);
        usage.Stderr.ShouldContain("usage: propeller-proplet run");
    }

    [Fact]
    public async Task GivenRunWithLimits_WhenTheGuestRunsAway_ThenEachLimitEndsItWithItsExitCode()
    {
        var spin = Path.Combine(_dir.FullName, "spin.wasm");
        var grow = Path.Combine(_dir.FullName, "grow.wasm");
        var garbage = Path.Combine(_dir.FullName, "garbage.wasm");
        await File.WriteAllBytesAsync(spin, Modules.Spin, TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(grow, Modules.Grow, TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(garbage, [0, 97, 115, 109, 1, 0], TestContext.Current.CancellationToken);

        var fuel = await RunAsync(["run", "--fuel", "100000", "--invoke", "main", spin], []);
        fuel.Code.ShouldBe(134);
        fuel.Stderr.ShouldStartWith("error: wasm trap: all fuel consumed");
        var timeout = await RunAsync(["run", "--timeout", "0.3", "--invoke", "main", spin], []);
        timeout.Code.ShouldBe(124);
        timeout.Stderr.ShouldContain("--timeout of 0.3 s exceeded");
        (await RunAsync(["run", "--max-memory", "2", "--invoke", "main", grow], [])).ShouldBe((0, "-1\n", ""));
        var malformed = await RunAsync(["run", garbage], []);
        malformed.Code.ShouldBe(1);
        malformed.Stderr.ShouldStartWith("error: ");
    }

    [Fact]
    public async Task GivenMissingOrBadSettings_WhenStarted_ThenItStopsWithAMessageNamingTheProblem()
    {
        var missing = await RunAsync([], new Dictionary<string, string> { ["PROPLET_CONFIG_FILE"] = Path.Combine(_dir.FullName, "none.toml") });
        missing.Code.ShouldBe(78);
        missing.Stderr.ShouldContain("configuration error: config file");
        missing.Stderr.ShouldContain("not accessible");

        var bad = await RunAsync([], new Dictionary<string, string>
        {
            ["PROPLET_TENANT_ID"] = "t",
            ["PROPLET_CHANNEL_ID"] = "c",
            ["PROPLET_ENTITY_ID"] = "e",
            ["PROPLET_API_KEY"] = "k",
            ["PROPLET_MQTT_QOS"] = "7",
        });
        bad.Code.ShouldBe(78);
        bad.Stderr.ShouldContain("PROPLET_MQTT_QOS '7' must be an integer from 0 to 2");
    }

    private async Task<(int Code, string Stdout, string Stderr)> RunAsync(string[] args, Dictionary<string, string> env)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _dir.FullName,
        };
        info.ArgumentList.Add(Cluster.Built("Edge", "propeller-proplet.dll"));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("PROPLET_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(name);
        }

        foreach (var (key, value) in env)
        {
            info.Environment[key] = value;
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}
