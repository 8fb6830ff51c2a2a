using System.Diagnostics;
using Npgsql;
using Propeller.Tests.Shared;

namespace Propeller.EndToEnd.Tests;

/// <summary>The propeller-manager executable's start against a database it cannot use.</summary>
public sealed class ManagerStartupTests
{
    /// <summary>
    /// A manager whose database refuses it (here a wrong password) stops at start with one line naming the problem and
    /// the setting to check, and exit code 1. Before, the event store's failure escaped Main: an unhandled exception's
    /// stack trace and an abort (134).
    /// </summary>
    [Fact]
    public async Task GivenADatabaseThatRefusesTheManager_WhenItStarts_ThenItExitsWithOneLineNamingTheSetting()
    {
        var connection = new NpgsqlConnectionStringBuilder(await TestPostgres.ConnectionStringAsync()) { Password = "not-the-password" };
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Cluster.Built("Manager", "propeller-manager.dll"));
        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("MANAGER_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(name);
        }

        info.Environment["EventStore__ConnectionString"] = connection.ConnectionString;
        info.Environment["MANAGER_HTTP_PORT"] = "0";

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(90));
        await process.WaitForExitAsync(timeout.Token);

        var error = await stderr;
        (process.ExitCode, error.Contains("Unhandled exception", StringComparison.Ordinal)).ShouldBe((1, false), error);
        error.ShouldContain("propeller-manager: Marten's event store schema could not be applied");
        _ = await stdout;
    }
}
