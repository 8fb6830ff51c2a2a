using System.Net;
using System.Net.Sockets;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>What goes wrong around a connect: a step after it that fails, a filter the broker would refuse, a stop in the middle of it.</summary>
public sealed class ConnectFailureTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenTheStepAfterTheConnectFailsOnce_WhenTheConnectionTriesAgain_ThenItBecomesReadyAndPublishes()
    {
        var options = TestBroker.Options(MqttProtocolVersion.V500);
        options.Subscriptions.Add((TestBroker.UniqueTopic("after-connect"), MqttQualityOfServiceLevel.AtLeastOnce));
        var calls = 0;
        options.Subscribing = _ =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                throw new InvalidOperationException("the first subscribing step fails");
            }
        };
        await using var client = new BrokerConnection(options);

        await client.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await client.PublishAsync(TestBroker.UniqueTopic("after-connect"), "x"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        Volatile.Read(ref calls).ShouldBeGreaterThanOrEqualTo(2);
    }

    /// <summary>
    /// MQTTnet reports a failed connect (and the end of a connection) from a task of its own, which may run only after
    /// the next attempt connected. Such a late report must not undo that connection: it stayed up but never ready, every
    /// publish timed out, and nothing reconnected it (the client was connected).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GivenALateDisconnectedEvent_WhenItArrivesAfterTheNextConnect_ThenTheConnectionStaysReady(bool clientWasConnected)
    {
        await using var client = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        await client.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);

        await client.OnDisconnectedAsync(new MQTTnet.MqttClientDisconnectedEventArgs(
            clientWasConnected, null, MQTTnet.MqttClientDisconnectReason.UnspecifiedError, "an earlier attempt", null, new IOException("an earlier attempt")));

        client.IsConnected.ShouldBeTrue();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        await client.PublishAsync(TestBroker.UniqueTopic("late-event"), "x"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, timeout.Token);
    }

    [Theory]
    [InlineData("a/#/b")]
    [InlineData("a/b+")]
    [InlineData("a#")]
    [InlineData("")]
    public async Task GivenAFilterTheBrokerWouldRefuse_WhenSubscribed_ThenItIsRefusedAndNotKept(string filter)
    {
        await using var client = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));

        await Should.ThrowAsync<ArgumentException>(() => client.SubscribeAsync(filter, MqttQualityOfServiceLevel.AtLeastOnce, Ct));

        client.Options.Subscriptions.ShouldBeEmpty();
    }

    [Fact]
    public async Task GivenABrokerThatNeverAnswersTheConnect_WhenTheConnectionIsDisposedMeanwhile_ThenDisposingEndsQuietly()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var accepted = new List<Socket>();
        var accepting = Task.Run(async () =>
        {
            while (true)
            {
                accepted.Add(await silent.AcceptSocketAsync(Ct)); // and never says a word
            }
        }, Ct);
        var options = new BrokerOptions { ClientId = "silent-" + Guid.NewGuid().ToString("N")[..8], ConnectTimeout = TimeSpan.FromSeconds(30) }
            .WithAddress($"tcp://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}");
        var client = new BrokerConnection(options);
        using (var waiting = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            waiting.CancelAfter(TimeSpan.FromMilliseconds(300));
            await Should.ThrowAsync<OperationCanceledException>(() => client.StartAsync(waiting.Token));
        }

        await client.DisposeAsync(); // in the middle of the CONNECT, which waits for its CONNACK

        client.IsConnected.ShouldBeFalse();
        silent.Stop();
        foreach (var socket in accepted)
        {
            socket.Dispose();
        }

        await Should.ThrowAsync<Exception>(() => accepting);
    }

    [Fact]
    public async Task GivenNoBroker_WhenPublishesTimeOut_ThenTheyAreNotKeptUntilTheConnectionReturns()
    {
        var options = new BrokerOptions { ClientId = "gone-" + Guid.NewGuid().ToString("N")[..8], OperationTimeout = TimeSpan.FromMilliseconds(200) }
            .WithAddress("tcp://127.0.0.1:1"); // nothing listens there
        await using var client = new BrokerConnection(options);
        using (var waiting = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            waiting.CancelAfter(TimeSpan.FromMilliseconds(100));
            await Should.ThrowAsync<OperationCanceledException>(() => client.StartAsync(waiting.Token));
        }

        var publishes = Enumerable.Range(0, 200).Select(_ => client.PublishAsync("propeller-test/gone", new byte[1024], MqttQualityOfServiceLevel.AtLeastOnce, Ct)).ToList();
        foreach (var publish in publishes)
        {
            await Should.ThrowAsync<TimeoutException>(() => publish);
        }

        var deadline = DateTime.UtcNow + TestBroker.Timeout;
        while (client.QueuedSends > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, Ct);
        }

        client.QueuedSends.ShouldBe(0);
    }

    [Fact]
    public async Task GivenABrokerThatNeverAcknowledgesAPublish_WhenItTimesOut_ThenItsPlaceInTheWindowIsFreedForTheNext()
    {
        using var fake = new TcpListener(IPAddress.Loopback, 0);
        fake.Start();
        var serving = Task.Run(() => ServeIgnoringTheFirstPublishAsync(fake, Ct), Ct);
        var options = new BrokerOptions
        {
            ClientId = "unacked-" + Guid.NewGuid().ToString("N")[..8],
            ProtocolVersion = MqttProtocolVersion.V311,
            MaxInflight = 1,
            OperationTimeout = TimeSpan.FromSeconds(1),
        }.WithAddress($"tcp://127.0.0.1:{((IPEndPoint)fake.LocalEndpoint).Port}");
        await using var client = new BrokerConnection(options);
        await client.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);

        await Should.ThrowAsync<TimeoutException>(() => client.PublishAsync("propeller-test/unacked", new byte[] { 1 }, MqttQualityOfServiceLevel.AtLeastOnce, Ct));
        await client.PublishAsync("propeller-test/unacked", new byte[] { 2 }, MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        serving.IsFaulted.ShouldBeFalse();
    }

    /// <summary>An MQTT 3.1.1 broker of a few lines: accepts the connect, answers pings, and acknowledges every QoS 1 publish but the first.</summary>
    private static async Task ServeIgnoringTheFirstPublishAsync(TcpListener listener, CancellationToken cancellationToken)
    {
        using var socket = await listener.AcceptSocketAsync(cancellationToken);
        await using var stream = new NetworkStream(socket);
        var publishes = 0;
        var one = new byte[1];
        while (await stream.ReadAsync(one, cancellationToken) == 1)
        {
            var type = one[0];
            int length = 0, shift = 0;
            do
            {
                await stream.ReadExactlyAsync(one, cancellationToken);
                length |= (one[0] & 0x7F) << shift;
                shift += 7;
            }
            while ((one[0] & 0x80) != 0);
            var body = new byte[length];
            await stream.ReadExactlyAsync(body, cancellationToken);
            switch (type >> 4)
            {
                case 1: // CONNECT: accepted
                    await stream.WriteAsync(new byte[] { 0x20, 0x02, 0x00, 0x00 }, cancellationToken);
                    break;
                case 3 when ((type >> 1) & 3) == 1 && ++publishes > 1: // PUBLISH at QoS 1, after the first: PUBACK
                    var id = 2 + ((body[0] << 8) | body[1]);
                    await stream.WriteAsync(new byte[] { 0x40, 0x02, body[id], body[id + 1] }, cancellationToken);
                    break;
                case 12: // PINGREQ
                    await stream.WriteAsync(new byte[] { 0xD0, 0x00 }, cancellationToken);
                    break;
                case 14: // DISCONNECT
                    return;
            }
        }
    }

    /// <summary>
    /// MQTTnet waits for a SUBACK as long as the token lets it: a broker or proxy that never sent it left the connect
    /// waiting for ever (keep-alive holding the link up), never ready, every publish timing out. An unanswered
    /// subscription fails the connect, which is made again.
    /// </summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task GivenAProxyThatSwallowsTheFirstSuback_WhenConnecting_ThenTheConnectFailsAndIsMadeAgainAndBecomesReady(MqttProtocolVersion version)
    {
        await using var relay = MqttRelay.Start(TestBroker.Address);
        var swallowed = 0;
        relay.FromBroker = packet => (packet[0] & 0xF0) == 0x90 && Interlocked.Exchange(ref swallowed, 1) == 0 ? null : packet;
        var topic = TestBroker.UniqueTopic("unanswered-suback");
        var options = TestBroker.Options(version).WithAddress($"tcp://127.0.0.1:{relay.Port}");
        options.ConnectTimeout = TimeSpan.FromSeconds(2);
        options.Subscriptions.Add((topic, MqttQualityOfServiceLevel.AtLeastOnce));
        var logger = new CountingLogger();
        await using var client = new BrokerConnection(options, logger);
        var inbox = Inbox.Of(client);

        await client.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);

        Volatile.Read(ref swallowed).ShouldBe(1);
        logger.Count(7103).ShouldBeGreaterThanOrEqualTo(1); // ConnectFailed
        relay.Accepted.ShouldBeGreaterThanOrEqualTo(2);
        await client.PublishAsync(topic, "x"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        (await inbox.ReceiveAsync(Ct)).Topic.ShouldBe(topic);
    }

    /// <summary>
    /// MQTT 3.1.1 ends a borrowed session by connecting once more with a clean session. MQTTnet 5 returns a refused
    /// CONNACK instead of throwing: taken for success, the session was reported ended (and its row deleted by
    /// SessionRecovery) while the broker still held it.
    /// </summary>
    [Fact]
    public async Task GivenTheCleanSessionConnectIsRefused_WhenEndingASessionOverMqtt311_ThenItIsNotReportedEnded()
    {
        await using var relay = MqttRelay.Start(TestBroker.Address);
        var connacks = 0;
        // The second CONNACK (the clean-session connect) refuses: 3.1.1 return code 5, not authorised.
        relay.FromBroker = packet => (packet[0] & 0xF0) == 0x20 && Interlocked.Increment(ref connacks) == 2 ? [0x20, 0x02, 0x00, 0x05] : packet;
        var options = TestBroker.Options(MqttProtocolVersion.V311).WithAddress($"tcp://127.0.0.1:{relay.Port}");
        options.CleanStart = false;
        await using var client = new BrokerConnection(options);
        await client.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);

        var ended = await client.EndSessionAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);

        Volatile.Read(ref connacks).ShouldBe(2);
        ended.ShouldBeFalse();
    }
}
