using System.Diagnostics;
using System.Globalization;
using System.Text;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>Tests that need a mosquitto of their own (restarts, password file, TLS); each starts one on a free
/// loopback port and kills it at the end. Pitfall 5 (no managed client: reconnect, resubscribe, publishing while
/// disconnected) is covered by the restart test.</summary>
public sealed class OwnBrokerTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311, MqttQualityOfServiceLevel.AtLeastOnce)]
    [InlineData(MqttProtocolVersion.V500, MqttQualityOfServiceLevel.ExactlyOnce)]
    [InlineData(MqttProtocolVersion.V500, MqttQualityOfServiceLevel.AtLeastOnce)]
    [InlineData(MqttProtocolVersion.V311, MqttQualityOfServiceLevel.ExactlyOnce)]
    public async Task GivenBrokerRestartMidStream_WhenPublishingDuringTheOutage_ThenClientsReconnectResubscribeAndEveryMessageArrives(
        MqttProtocolVersion version,
        MqttQualityOfServiceLevel qos)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true", ct);
        var topic = "m/tenant/c/channel/control/manager/start";

        BrokerOptions Persistent(string id)
        {
            var options = broker.Options(version, id);
            options.CleanStart = false;
            options.SessionExpiryInterval = 3600;
            return options;
        }

        await using var subscriber = new BrokerConnection(Persistent("proplet-persistent"));
        await using var watcher = new BrokerConnection(broker.Options(version, "proplet-clean"));
        await using var publisher = new BrokerConnection(Persistent("manager"));
        var inbox = Inbox.Of(subscriber);
        var watched = Inbox.Of(watcher);
        await subscriber.StartAsync(ct);
        await watcher.StartAsync(ct);
        await publisher.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, qos, ct);
        await watcher.SubscribeAsync("m/+/c/+/control/manager/#", qos, ct);

        Task PublishRangeAsync(int from, int count) =>
            Task.WhenAll(Enumerable.Range(from, count).Select(i =>
                publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(CultureInfo.InvariantCulture)), qos, retain: false, orderKey: "k", ct)));

        await PublishRangeAsync(0, 50);
        var seen = new HashSet<int>();
        await ReceiveDistinctAsync(inbox, 50, seen, ct);
        await subscriber.PublishAsync("barrier/" + Guid.NewGuid().ToString("N"), Array.Empty<byte>(), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await broker.StopAsync(ct);
        await WaitUntilAsync(() => !subscriber.IsConnected && !watcher.IsConnected && !publisher.IsConnected, ct);

        // Publishing while disconnected waits for the connection instead of failing.
        var duringOutage = PublishRangeAsync(50, 50);
        await Task.Delay(300, ct);
        duringOutage.IsCompleted.ShouldBeFalse();
        await broker.StartAsync(ct);
        await duringOutage.WaitAsync(TestBroker.Timeout, ct);

        // The clean-session watcher lost its subscription with the broker restart; it must have subscribed again.
        await WaitUntilAsync(() => watcher.IsConnected && subscriber.IsConnected, ct);
        await PublishRangeAsync(100, 50);

        // Nothing lost; a message whose acknowledgement the stopping broker never read may arrive twice (at least once).
        await ReceiveDistinctAsync(inbox, 150, seen, ct);
        seen.Order().ShouldBe(Enumerable.Range(0, 150));
        var fromWatcher = new HashSet<int>();
        await ReceiveDistinctAsync(watched, 50, fromWatcher, ct, only: i => i >= 100);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task GivenTheBrokerRefusesTheCredentials_WhenTheyAreAcceptedLater_ThenTheConnectionRetriesAndConnects(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        string? passwords = null;
        await using var broker = await MosquittoProcess.StartAsync(
            directory =>
            {
                passwords = Path.Combine(directory, "passwords");
                using var passwd = Process.Start("mosquitto_passwd", ["-b", "-c", passwords, "someone-else", "x"])!;
                passwd.WaitForExit();
                return $"allow_anonymous false\npassword_file {passwords}";
            },
            ct);

        var options = broker.Options(version, "proplet-1");
        options.Username = "proplet-1";
        options.Password = "s3cret";
        var connects = 0;
        await using var client = new BrokerConnection(options)
        {
            // No subscriptions: a refusal taken for a connection reached this callback (and retried without backoff).
            Connected = (_, _) =>
            {
                Interlocked.Increment(ref connects);
                return Task.CompletedTask;
            },
        };
        using (var refused = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            refused.CancelAfter(TimeSpan.FromSeconds(1));
            await Should.ThrowAsync<OperationCanceledException>(() => client.StartAsync(refused.Token));
        }

        client.IsConnected.ShouldBeFalse();
        Volatile.Read(ref connects).ShouldBe(0);
        using (var passwd = Process.Start("mosquitto_passwd", ["-b", passwords!, "proplet-1", "s3cret"])!)
        {
            await passwd.WaitForExitAsync(ct);
        }

        await broker.ReloadAsync(ct);
        await client.WaitConnectedAsync(ct).WaitAsync(TestBroker.Timeout, ct);
        client.IsConnected.ShouldBeTrue();
        await WaitUntilAsync(() => Volatile.Read(ref connects) > 0, ct); // the callback runs beside the connection's loop
        Volatile.Read(ref connects).ShouldBe(1);
    }

    /// <summary>
    /// A subscription the broker refuses at a connect (its ACL, here mosquitto's dynamic security plugin: acl_file never
    /// refuses a subscription) fails that connect: the connection is not ready meanwhile and tries again after its
    /// backoff, also when the broker kept the session (which then lacks the filter), and receives once the broker
    /// allows it. It was taken for connected and stayed deaf to the topic until some later reconnect.
    /// </summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V311, true)]
    [InlineData(MqttProtocolVersion.V311, false)]
    [InlineData(MqttProtocolVersion.V500, true)]
    [InlineData(MqttProtocolVersion.V500, false)]
    public async Task GivenTheBrokerRefusesASubscription_WhenItAllowsItLater_ThenTheConnectionIsNotReadyMeanwhileAndThenReceives(MqttProtocolVersion version, bool cleanStart)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(
            directory =>
            {
                var config = Path.Combine(directory, "dynsec.json");
                using (var init = Process.Start("mosquitto_ctrl", ["dynsec", "init", config, "admin", "admin-secret"])!)
                {
                    init.WaitForExit();
                }

                // The plugin's defaults, but anyone may publish: subscribing stays denied.
                var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!;
                json["defaultACLAccess"]!["publishClientSend"] = true;
                File.WriteAllText(config, json.ToJsonString());
                return $"allow_anonymous true\nplugin {DynamicSecurityPlugin}\nplugin_opt_config_file {config}";
            },
            ct);
        var topic = "acl/control/manager/start";
        var options = broker.Options(version, "proplet-acl");
        options.CleanStart = cleanStart;
        options.SessionExpiryInterval = cleanStart ? 0 : 3600u;
        options.Subscriptions.Add((topic, MqttQualityOfServiceLevel.AtLeastOnce));
        var log = new CountingLogger();
        await using var client = new BrokerConnection(options, log);
        var inbox = Inbox.Of(client);
        await using var publisher = new BrokerConnection(broker.Options(version, "publisher"));
        await publisher.StartAsync(ct);

        var refusing = Stopwatch.StartNew();
        using (var refused = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            refused.CancelAfter(TimeSpan.FromSeconds(1.5));
            await Should.ThrowAsync<OperationCanceledException>(() => client.StartAsync(refused.Token));
        }

        client.IsConnected.ShouldBeFalse();
        client.RefusedSubscription.ShouldNotBeNull().ShouldStartWith(topic);
        // Asked again, after the backoff (100 ms doubling to 500 ms, with jitter: at most ~10 attempts in this time).
        var refusals = log.Count(7105);
        refusals.ShouldBeGreaterThanOrEqualTo(2);
        refusals.ShouldBeLessThanOrEqualTo((int)(refusing.Elapsed.TotalMilliseconds / 50) + 1);

        var admin = broker.Options(version, "admin");
        admin.Username = "admin";
        admin.Password = "admin-secret";
        await using (var control = new BrokerConnection(admin))
        {
            await control.StartAsync(ct);
            await control.PublishAsync(
                "$CONTROL/dynamic-security/v1",
                """{"commands":[{"command":"setDefaultACLAccess","acls":[{"acltype":"subscribe","allow":true}]}]}"""u8.ToArray(),
                MqttQualityOfServiceLevel.AtLeastOnce,
                ct);
        }

        await client.WaitConnectedAsync(ct).WaitAsync(TestBroker.Timeout, ct);
        client.IsConnected.ShouldBeTrue();
        client.RefusedSubscription.ShouldBeNull();
        await publisher.PublishAsync(topic, "after"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);

        var received = await inbox.ReceiveAsync(ct);
        received.Topic.ShouldBe(topic);
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

        BrokerConnection Tls(BrokerTls tls)
        {
            var options = broker.Options(MqttProtocolVersion.V500, "tls-" + Guid.NewGuid().ToString("N")[..8]);
            options.Tls = tls;
            return new BrokerConnection(options);
        }

        await using (var client = Tls(new BrokerTls { CaFile = files.CaFile, ClientCertificateFile = files.ClientCert, ClientKeyFile = files.ClientKey }))
        {
            var inbox = Inbox.Of(client);
            await client.StartAsync(ct);
            await client.SubscribeAsync("secure/+", MqttQualityOfServiceLevel.ExactlyOnce, ct);
            await client.PublishAsync("secure/1", "over tls"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, ct);
            Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).ShouldBe("over tls");
        }

        await using (var insecure = Tls(new BrokerTls { AllowUntrustedCertificates = true, ClientCertificateFile = files.ClientCert, ClientKeyFile = files.ClientKey }))
        {
            await insecure.StartAsync(ct).WaitAsync(TestBroker.Timeout, ct);
        }

        foreach (var refused in new[] { new BrokerTls { ClientCertificateFile = files.ClientCert, ClientKeyFile = files.ClientKey }, new BrokerTls { CaFile = files.CaFile } })
        {
            await using var client = Tls(refused);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wait.CancelAfter(TimeSpan.FromSeconds(1));
            await Should.ThrowAsync<OperationCanceledException>(() => client.StartAsync(wait.Token));
            client.IsConnected.ShouldBeFalse();
        }
    }

    /// <summary>
    /// A broker whose certificate an intermediate CA signed, presenting the leaf and the intermediate, with only the root
    /// in the CA file (the usual setup): trusted. The chain was built from the CA file alone and refused.
    /// </summary>
    [Fact]
    public async Task GivenABrokerCertificateSignedByAnIntermediate_WhenTheCaFileHoldsOnlyTheRoot_ThenTheConnectionIsTrusted()
    {
        var ct = TestContext.Current.CancellationToken;
        (string RootFile, string ServerChain, string ServerKey) files = default;
        await using var broker = await MosquittoProcess.StartAsync(
            directory =>
            {
                files = TestCertificates.WriteWithIntermediate(directory);
                return $"allow_anonymous true\ncertfile {files.ServerChain}\nkeyfile {files.ServerKey}";
            },
            ct);
        var options = broker.Options(MqttProtocolVersion.V500, "tls-" + Guid.NewGuid().ToString("N")[..8]);
        options.Tls = new BrokerTls { CaFile = files.RootFile };
        await using var client = new BrokerConnection(options);

        await client.StartAsync(ct).WaitAsync(TestBroker.Timeout, ct);

        client.IsConnected.ShouldBeTrue();
    }

    /// <summary>
    /// A held handler fills the receive queue, but MQTTnet's read loop goes on queueing what the broker sends, without a
    /// limit. Only the broker's in-flight limit towards the client bounds that: the connection asks for a Receive Maximum
    /// of the receive queue's capacity. What the test sees is the broker's side (mosquitto logs every PUBLISH it sends),
    /// which is what MQTTnet can have read: the unacknowledged QoS 1 messages sent to the held client stay at the
    /// Receive Maximum instead of all 500.
    /// </summary>
    [Fact]
    public async Task GivenAHeldHandlerAndASmallReceiveQueue_WhenManyQos1MessagesArrive_ThenTheBrokerSendsNoMoreThanTheReceiveMaximumAhead()
    {
        const int capacity = 16;
        const int count = 500;
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true", ct);
        var topic = "held/" + Guid.NewGuid().ToString("N");
        var options = broker.Options(MqttProtocolVersion.V500, "held-subscriber");
        options.ReceiveQueueCapacity = capacity;
        await using var subscriber = new BrokerConnection(options);
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handled = 0;
        subscriber.Handler = async (messages, cancellationToken) =>
        {
            await hold.Task.WaitAsync(cancellationToken); // ends when the connection stops, should the test fail first
            Interlocked.Add(ref handled, messages.Count);
        };
        await using var publisher = new BrokerConnection(broker.Options(MqttProtocolVersion.V500, "held-publisher"));
        await subscriber.StartAsync(ct);
        await publisher.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);

        await Task.WhenAll(Enumerable.Range(0, count).Select(i =>
            publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(CultureInfo.InvariantCulture)), MqttQualityOfServiceLevel.AtLeastOnce, ct)));
        await WaitUntilAsync(() => SentTo(broker, "held-subscriber") >= capacity, ct);
        await Task.Delay(TimeSpan.FromSeconds(1), ct); // room for more to be sent, were any allowed

        SentTo(broker, "held-subscriber").ShouldBeLessThanOrEqualTo(capacity, "mosquitto sent more unacknowledged messages than the Receive Maximum asked for");
        hold.SetResult();
        await WaitUntilAsync(() => Volatile.Read(ref handled) >= count, ct);
    }

    /// <summary>
    /// A publish whose packet is larger than the Maximum Packet Size the broker announced (MQTT 5 CONNACK; mosquitto's
    /// max_packet_size) is refused at once, naming both sizes, and the connection stays up; one of exactly that size goes
    /// through. It was sent as it was: mosquitto closed the connection for it ("oversize packet"), and it went again
    /// after every reconnect until the publish timed out.
    /// </summary>
    [Fact]
    public async Task GivenABrokerMaximumPacketSize_WhenAPublishIsLarger_ThenItIsRefusedAtOnce_AndTheConnectionStaysUp()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true\nmax_packet_size 2048", ct);
        var topic = "big/" + Guid.NewGuid().ToString("N"); // 36 bytes: a QoS 1 packet is 44 bytes plus the payload
        var options = broker.Options(MqttProtocolVersion.V500, "big-" + Guid.NewGuid().ToString("N")[..8]);
        options.OperationTimeout = TimeSpan.FromSeconds(5);
        await using var connection = new BrokerConnection(options);
        var inbox = Inbox.Of(connection);
        await connection.StartAsync(ct);
        await connection.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);
        var watch = Stopwatch.StartNew();

        var refused = await Should.ThrowAsync<BrokerPublishException>(() => connection.PublishAsync(topic, new byte[3000], MqttQualityOfServiceLevel.AtLeastOnce, ct));

        watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(4));
        refused.PacketSize.ShouldBe(3044);
        refused.MaximumPacketSize.ShouldBe(2048);
        refused.Message.ShouldContain("3044 bytes is larger than the broker's maximum packet size of 2048 bytes");
        await connection.PublishAsync(topic, new byte[2004], MqttQualityOfServiceLevel.AtLeastOnce, ct);
        (await inbox.ReadAsync(ct).AsTask().WaitAsync(Inbox.Timeout, ct)).Payload.Length.ShouldBe(2004);
        connection.IsConnected.ShouldBeTrue();
        broker.ReadLog().ShouldNotContain("oversize packet");
    }

    private static int SentTo(MosquittoProcess broker, string clientId) =>
        broker.ReadLog().Split('\n').Count(line => line.Contains($"Sending PUBLISH to {clientId} ", StringComparison.Ordinal));

    /// <summary>mosquitto's dynamic security plugin, where Debian and Ubuntu's mosquitto package puts it.</summary>
    private static string DynamicSecurityPlugin =>
        new[] { "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib" }
            .Select(directory => Path.Combine(directory, "mosquitto_dynamic_security.so"))
            .FirstOrDefault(File.Exists) ?? throw new FileNotFoundException("mosquitto_dynamic_security.so (the mosquitto package) is not installed");

    private static async Task WaitUntilAsync(Func<bool> condition, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            deadline.Elapsed.ShouldBeLessThan(TestBroker.Timeout, "condition not reached");
            await Task.Delay(20, cancellationToken);
        }
    }

    private static async Task ReceiveDistinctAsync(Inbox inbox, int count, HashSet<int> seen, CancellationToken cancellationToken, Func<int, bool>? only = null)
    {
        while (seen.Count < count)
        {
            var value = int.Parse(Encoding.UTF8.GetString((await inbox.ReceiveAsync(cancellationToken)).Payload.Span), CultureInfo.InvariantCulture);
            if (only is null || only(value))
            {
                seen.Add(value);
            }
        }
    }
}
