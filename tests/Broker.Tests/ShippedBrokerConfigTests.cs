using System.Globalization;
using System.Text;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>
/// docker/mosquitto.conf, the broker the compose deployment runs, against what the manager's persistent session relies
/// on (docs/operations.md, "Brokers"): results published while the manager is away are kept for it, however many
/// arrive and across a broker restart. With mosquitto's defaults a session keeps 1,000 queued QoS 1/2 messages and
/// drops the rest without a word to anyone, and nothing survives a restart (no persistence).
/// </summary>
public sealed class ShippedBrokerConfigTests
{
    private const int Messages = 5000;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenTheShippedConfig_WhenASessionIsAwayWhileThousandsArrive_AndTheBrokerRestarts_ThenItGetsEveryOne()
    {
        await using var broker = await MosquittoProcess.StartAsync(_ => ShippedSettings(), Ct);
        var topic = "shipped/results";
        var options = broker.Options(MqttProtocolVersion.V500, "away-" + Guid.NewGuid().ToString("N")[..8]);
        options.CleanStart = false;
        options.SessionExpiryInterval = 3600;
        await using (var away = new BrokerConnection(options))
        {
            await away.StartAsync(Ct);
            await away.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        }

        await using (var publisher = new BrokerConnection(broker.Options(MqttProtocolVersion.V500, "pub")))
        {
            await publisher.StartAsync(Ct);
            await Task.WhenAll(Enumerable.Range(0, Messages).Select(i =>
                publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(CultureInfo.InvariantCulture)), MqttQualityOfServiceLevel.AtLeastOnce, Ct)));
        }

        await broker.StopAsync(Ct);
        await broker.StartAsync(Ct);

        await using var back = new BrokerConnection(options);
        var inbox = Inbox.Of(back);
        await back.StartAsync(Ct);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using var quiet = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        try
        {
            while (seen.Count < Messages)
            {
                quiet.CancelAfter(TimeSpan.FromSeconds(5));
                seen.Add(Encoding.UTF8.GetString((await inbox.ReadAsync(quiet.Token)).Payload.Span));
            }
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            // nothing more came
        }

        seen.Count.ShouldBe(Messages, broker.ReadLog().Split('\n').FirstOrDefault(l => l.Contains("dropped", StringComparison.Ordinal)));
    }

    /// <summary>The test's broker persists where it likes; the shipped one must persist where compose keeps a volume.</summary>
    [Fact]
    public void GivenTheShippedConfig_ThenItPersistsOnTheComposeVolume()
    {
        var settings = File.ReadAllLines(DockerFile("mosquitto.conf")).Select(line => line.Trim()).ToList();
        settings.ShouldContain("persistence true");
        settings.ShouldContain("persistence_location /mosquitto/data/");
        File.ReadAllText(DockerFile("compose.yaml")).ShouldContain("- mosquitto-data:/mosquitto/data");
    }

    /// <summary>The shipped file's settings, but for what the test's broker sets itself (its listener, where it persists,
    /// where it logs).</summary>
    private static string ShippedSettings() =>
        string.Join('\n', File.ReadAllLines(DockerFile("mosquitto.conf")).Where(line => !line.TrimStart().StartsWith('#')
            && !line.StartsWith("listener", StringComparison.Ordinal) && !line.StartsWith("persistence_location", StringComparison.Ordinal)
            && !line.StartsWith("log_dest", StringComparison.Ordinal)));

    private static string DockerFile(string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Propeller.sln")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Propeller.sln not found above " + AppContext.BaseDirectory), "docker", name);
    }
}
