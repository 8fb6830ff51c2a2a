using System.Diagnostics;
using System.Globalization;
using System.Security.Authentication;
using System.Text;

namespace Propeller.Mqtt.Tests;

/// <summary>Tests that need a mosquitto of their own (restarts, password file, TLS); each starts one on a free
/// loopback port and kills it at the end.</summary>
public sealed class OwnBrokerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Theory]
    [InlineData(MqttProtocolVersion.V311, MqttQualityOfService.AtLeastOnce)]
    [InlineData(MqttProtocolVersion.V500, MqttQualityOfService.ExactlyOnce)]
    [InlineData(MqttProtocolVersion.V500, MqttQualityOfService.AtLeastOnce)]
    [InlineData(MqttProtocolVersion.V311, MqttQualityOfService.ExactlyOnce)]
    public async Task GivenBrokerRestartMidStream_WhenPublishingDuringTheOutage_ThenClientsReconnectResubscribeAndEveryMessageArrivesOnce(
        MqttProtocolVersion version,
        MqttQualityOfService qos)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true", ct);
        var topic = "m/tenant/c/channel/control/manager/start";

        MqttClientOptions Persistent(string id)
        {
            var options = broker.Options(version, id);
            options.CleanStart = false;
            options.SessionExpiryInterval = 3600;
            return options;
        }

        await using var subscriber = new MqttClient(Persistent("proplet-persistent"));
        await using var watcher = new MqttClient(broker.Options(version, "proplet-clean"));
        await using var publisher = new MqttClient(Persistent("manager"));
        await subscriber.ConnectAsync(ct);
        await watcher.ConnectAsync(ct);
        await publisher.ConnectAsync(ct);
        await subscriber.SubscribeAsync(topic, qos, ct);
        await watcher.SubscribeAsync("m/+/c/+/control/manager/#", qos, ct);

        async Task PublishRangeAsync(int from, int count) =>
            await Task.WhenAll(Enumerable.Range(from, count)
                .Select(i => publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(CultureInfo.InvariantCulture)), qos, retain: false, ct)));

        await PublishRangeAsync(0, 50);

        // Let the subscriber take the first 50 and the broker process its acknowledgements (a QoS 1 round trip from the
        // subscriber comes back only after the broker handled everything the subscriber sent before it). Otherwise a
        // message whose acknowledgement the stopping broker never read is rightly delivered again after the restart.
        var seen = new HashSet<int>();
        var early = await ReceiveDistinctAsync(subscriber, 50, seen, ct);
        await subscriber.PublishAsync("barrier/" + Guid.NewGuid().ToString("N"), Array.Empty<byte>(), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        await broker.StopAsync(ct);
        await WaitUntilAsync(() => !subscriber.IsConnected && !watcher.IsConnected && !publisher.IsConnected, ct);
        var duringOutage = PublishRangeAsync(50, 50);
        await Task.Delay(300, ct);
        duringOutage.IsCompleted.ShouldBeFalse();
        await broker.StartAsync(ct);
        await duringOutage.WaitAsync(Timeout, ct);

        // The clean-session watcher lost its subscription with the broker restart; it must have re-subscribed.
        await WaitUntilAsync(() => watcher.IsConnected && subscriber.IsConnected, ct);
        await PublishRangeAsync(100, 50);

        var received = await ReceiveDistinctAsync(subscriber, 150, seen, ct);
        (early.Duplicates + received.Duplicates).ShouldBe(0, broker.ReadLog());
        received.Values.Order().ShouldBe(Enumerable.Range(0, 150));
        (await TestBroker.NothingReceivedAsync(subscriber, TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();

        var watched = new HashSet<int>();
        while (!Enumerable.Range(100, 50).All(watched.Contains))
        {
            var message = await TestBroker.ReceiveAsync(watcher, Timeout, ct);
            watched.Add(int.Parse(Encoding.UTF8.GetString(message.Payload.Span), CultureInfo.InvariantCulture)).ShouldBeTrue("duplicate delivery to the watcher");
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task GivenPasswordFile_WhenCredentialsAreWrong_ThenConnectFailsWithAClearError_AndRightOnesConnect(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(
            directory =>
            {
                var file = Path.Combine(directory, "passwords");
                using var passwd = Process.Start("mosquitto_passwd", ["-b", "-c", file, "proplet-1", "s3cret"])!;
                passwd.WaitForExit();
                return $"allow_anonymous false\npassword_file {file}";
            },
            ct);

        var wrong = broker.Options(version, "proplet-1");
        wrong.Username = "proplet-1";
        wrong.Password = "wrong";
        await using (var client = new MqttClient(wrong))
        {
            var error = await Should.ThrowAsync<MqttConnectException>(() => client.ConnectAsync(ct));
            error.IsAuthenticationFailure.ShouldBeTrue();
            error.Message.ShouldContain("refused");
            client.IsConnected.ShouldBeFalse();
        }

        var anonymous = broker.Options(version, "anon");
        await using (var client = new MqttClient(anonymous))
        {
            (await Should.ThrowAsync<MqttConnectException>(() => client.ConnectAsync(ct))).IsAuthenticationFailure.ShouldBeTrue();
        }

        var right = broker.Options(version, "proplet-1");
        right.Username = "proplet-1";
        right.Password = "s3cret";
        await using var ok = new MqttClient(right);
        await ok.ConnectAsync(ct);
        ok.IsConnected.ShouldBeTrue();
    }

    [Fact]
    public async Task GivenMutualTlsBroker_WhenConnectingWithTheCaAndAClientCertificate_ThenMessagesRoundTrip_AndUntrustedBrokersAreRejected()
    {
        var ct = TestContext.Current.CancellationToken;
        (string CaFile, string ServerCert, string ServerKey, string ClientCert, string ClientKey) files = default;
        await using var broker = await MosquittoProcess.StartAsync(
            directory =>
            {
                files = TestCertificates.Write(directory);
                return $"allow_anonymous true\ncafile {files.CaFile}\ncertfile {files.ServerCert}\nkeyfile {files.ServerKey}\nrequire_certificate true";
            },
            ct);

        MqttClientOptions Tls(MqttTlsOptions tls)
        {
            var options = broker.Options(MqttProtocolVersion.V500, "tls-" + Guid.NewGuid().ToString("N")[..8]);
            options.Tls = tls;
            options.AutoReconnect = false;
            return options;
        }

        await using (var client = new MqttClient(Tls(new MqttTlsOptions { CaFile = files.CaFile, ClientCertificateFile = files.ClientCert, ClientKeyFile = files.ClientKey })))
        {
            await client.ConnectAsync(ct);
            await client.SubscribeAsync("secure/+", MqttQualityOfService.ExactlyOnce, ct);
            await client.PublishAsync("secure/1", "over tls"u8.ToArray(), MqttQualityOfService.ExactlyOnce, retain: false, ct);
            var message = await TestBroker.ReceiveAsync(client, Timeout, ct);
            Encoding.UTF8.GetString(message.Payload.Span).ShouldBe("over tls");
        }

        await using (var insecure = new MqttClient(Tls(new MqttTlsOptions { AllowUntrustedCertificates = true, ClientCertificateFile = files.ClientCert, ClientKeyFile = files.ClientKey })))
        {
            await insecure.ConnectAsync(ct);
            insecure.IsConnected.ShouldBeTrue();
        }

        await using (var untrusted = new MqttClient(Tls(new MqttTlsOptions { ClientCertificateFile = files.ClientCert, ClientKeyFile = files.ClientKey })))
        {
            await Should.ThrowAsync<AuthenticationException>(() => untrusted.ConnectAsync(ct));
        }

        await using (var wrongName = new MqttClient(Tls(new MqttTlsOptions { CaFile = files.CaFile, TargetHost = "broker.example", ClientCertificateFile = files.ClientCert, ClientKeyFile = files.ClientKey })))
        {
            await Should.ThrowAsync<AuthenticationException>(() => wrongName.ConnectAsync(ct));
        }

        await using (var noClientCertificate = new MqttClient(Tls(new MqttTlsOptions { CaFile = files.CaFile })))
        {
            await Should.ThrowAsync<Exception>(() => noClientCertificate.ConnectAsync(ct));
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            deadline.Elapsed.ShouldBeLessThan(Timeout, "condition not reached");
            await Task.Delay(20, cancellationToken);
        }
    }

    /// <summary>Receives until <paramref name="seen"/> holds <paramref name="count"/> distinct values; counts repeats.</summary>
    private static async Task<(List<int> Values, int Duplicates)> ReceiveDistinctAsync(MqttClient client, int count, HashSet<int> seen, CancellationToken cancellationToken)
    {
        var duplicates = 0;
        while (seen.Count < count)
        {
            var message = await TestBroker.ReceiveAsync(client, Timeout, cancellationToken);
            if (!seen.Add(int.Parse(Encoding.UTF8.GetString(message.Payload.Span), CultureInfo.InvariantCulture)))
            {
                duplicates++;
            }
        }

        return ([.. seen], duplicates);
    }
}
