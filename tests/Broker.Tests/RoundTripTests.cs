using System.Buffers;
using System.Text;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>The connection layer against the shared mosquitto: round trips, Last Will, handler batches.</summary>
public sealed class RoundTripTests
{
    public static TheoryData<MqttProtocolVersion, MqttQualityOfServiceLevel> Cases()
    {
        var data = new TheoryData<MqttProtocolVersion, MqttQualityOfServiceLevel>();
        foreach (var version in new[] { MqttProtocolVersion.V311, MqttProtocolVersion.V500 })
        {
            foreach (var qos in new[] { MqttQualityOfServiceLevel.AtMostOnce, MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.ExactlyOnce })
            {
                data.Add(version, qos);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task GivenSubscriber_WhenPublishingAtQos_ThenEveryMessageArrivesOnceInOrder(MqttProtocolVersion version, MqttQualityOfServiceLevel qos)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("roundtrip");
        await using var subscriber = new BrokerConnection(TestBroker.Options(version));
        await using var publisher = new BrokerConnection(TestBroker.Options(version));
        var inbox = Inbox.Of(subscriber);
        await subscriber.StartAsync(ct);
        await publisher.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, qos, ct);

        // Handed over together without waiting (pipelined); QoS 2 keeps its order through the order key.
        const int count = 200;
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => publisher.PublishAsync(topic, Encoding.UTF8.GetBytes($"m{i}"), qos, retain: false, orderKey: "one", ct)));

        for (var i = 0; i < count; i++)
        {
            var message = await inbox.ReceiveAsync(ct);
            message.Topic.ShouldBe(topic);
            message.Qos.ShouldBe(qos);
            Encoding.UTF8.GetString(message.Payload.Span).ShouldBe($"m{i}");
        }

        (await inbox.NothingAsync(TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GivenAPayloadOfSeveralBuffers_WhenPublishedWithOrWithoutFragmentation_ThenItArrivesJoined(bool fragmentation)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("segments");
        await using var subscriber = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var options = TestBroker.Options(MqttProtocolVersion.V500);
        options.AllowPacketFragmentation = fragmentation;
        await using var publisher = new BrokerConnection(options);
        var inbox = Inbox.Of(subscriber);
        await subscriber.StartAsync(ct);
        await publisher.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.ExactlyOnce, ct);
        var large = new byte[300_000];
        Random.Shared.NextBytes(large);
        var payload = PayloadSequence.Of("{\"head\":\""u8.ToArray(), large, "\"}"u8.ToArray());

        payload.IsSingleSegment.ShouldBeFalse();
        await publisher.PublishAsync(topic, payload, MqttQualityOfServiceLevel.ExactlyOnce, ct);
        await publisher.PublishAsync(topic, "small"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, ct);

        (await inbox.ReceiveAsync(ct)).Payload.ToArray().ShouldBe([.. "{\"head\":\""u8, .. large, .. "\"}"u8]);
        Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).ShouldBe("small");
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task GivenLastWill_WhenTheConnectionEndsWithoutDisconnect_ThenTheBrokerPublishesTheWill(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("will");
        await using var watcher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var inbox = Inbox.Of(watcher);
        await watcher.StartAsync(ct);
        await watcher.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);

        var options = TestBroker.Options(version);
        options.Will = new BrokerWill(topic, "{\"status\":\"offline\"}"u8.ToArray());
        var proplet = new BrokerConnection(options) { AbortOnDispose = true };
        await proplet.StartAsync(ct);
        (await inbox.NothingAsync(TimeSpan.FromMilliseconds(200), ct)).ShouldBeTrue();

        await proplet.DisposeAsync(); // closes the socket without DISCONNECT, as a killed process would

        var will = await inbox.ReceiveAsync(ct);
        Encoding.UTF8.GetString(will.Payload.Span).ShouldBe("{\"status\":\"offline\"}");
    }

    [Fact]
    public async Task GivenLastWill_WhenDisconnectingCleanly_ThenNoWillIsPublished()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("nowill");
        await using var watcher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var inbox = Inbox.Of(watcher);
        await watcher.StartAsync(ct);
        await watcher.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);
        var options = TestBroker.Options(MqttProtocolVersion.V311);
        options.Will = new BrokerWill(topic, "gone"u8.ToArray());
        await using var client = new BrokerConnection(options);
        await client.StartAsync(ct);
        await client.DisconnectAsync(ct);
        (await inbox.NothingAsync(TimeSpan.FromMilliseconds(500), ct)).ShouldBeTrue();

        // Disposing is an orderly stop too.
        var other = TestBroker.Options(MqttProtocolVersion.V500);
        other.Will = new BrokerWill(topic, "gone"u8.ToArray());
        var disposed = new BrokerConnection(other);
        await disposed.StartAsync(ct);
        await disposed.DisposeAsync();
        (await inbox.NothingAsync(TimeSpan.FromMilliseconds(500), ct)).ShouldBeTrue();
    }

    /// <summary>Options for a session the broker keeps for a minute under <paramref name="clientId"/>.</summary>
    private static BrokerOptions PersistentOptions(MqttProtocolVersion version, string clientId)
    {
        var options = TestBroker.Options(version, clientId);
        options.CleanStart = false;
        options.SessionExpiryInterval = 60;
        return options;
    }

    /// <summary>A persistent session keeps its subscriptions: a changed configuration reaches it through
    /// <see cref="BrokerOptions.StaleSubscriptions"/> (here: a plain filter replaced by a shared one, as the manager's
    /// MANAGER_MQTT_SHARE_GROUP does; mosquitto accepts <c>$share</c> from MQTT 3.1.1 clients too).</summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V500)]
    [InlineData(MqttProtocolVersion.V311)]
    public async Task GivenAKeptSession_WhenStaleSubscriptionsAreNamed_ThenTheyAreReplacedOnConnect(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("stale");
        var clientId = "t-" + Guid.NewGuid().ToString("N")[..12];
        BrokerOptions Persistent() => PersistentOptions(version, clientId);

        var before = Persistent();
        before.Subscriptions.Add((topic + "/old", MqttQualityOfServiceLevel.AtLeastOnce));
        await using (var first = new BrokerConnection(before))
        {
            await first.StartAsync(ct);
        }

        var after = Persistent();
        after.Subscriptions.Add(($"$share/g/{topic}/new", MqttQualityOfServiceLevel.AtLeastOnce));
        after.StaleSubscriptions.Add(topic + "/old");
        await using var second = new BrokerConnection(after);
        var inbox = Inbox.Of(second);
        await second.StartAsync(ct);
        await using var publisher = new BrokerConnection(TestBroker.Options(version));
        await publisher.StartAsync(ct);
        await publisher.PublishAsync(topic + "/old", "old"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await publisher.PublishAsync(topic + "/new", "new"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);

        var received = await inbox.ReceiveAsync(ct);
        received.Topic.ShouldBe(topic + "/new", "the shared subscription's messages carry the real topic; the old one is gone");
        (await inbox.NothingAsync(TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();
    }

    /// <summary>
    /// Replacing a kept session's filters subscribes the new ones before it removes the stale ones: a message published
    /// in between (here: while the relay holds the UNSUBACK back, so the broker has removed the stale filter) reaches the
    /// new filter. Before, the stale filter went first, and such a message matched none of the client's subscriptions
    /// and was dropped (for the manager moving between plain and shared filters: a result lost).
    /// </summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V500)]
    [InlineData(MqttProtocolVersion.V311)]
    public async Task GivenAKeptSession_WhenItsPlainFilterIsReplacedByASharedOne_ThenAMessagePublishedMeanwhileArrives(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("no-gap");
        var clientId = "t-" + Guid.NewGuid().ToString("N")[..12];
        var before = PersistentOptions(version, clientId);
        before.Subscriptions.Add((topic, MqttQualityOfServiceLevel.AtLeastOnce));
        await using (var first = new BrokerConnection(before))
        {
            await first.StartAsync(ct);
        }

        await using var relay = MqttRelay.Start(TestBroker.Address);
        var unsubscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var release = new ManualResetEventSlim();
        relay.FromBroker = packet =>
        {
            if ((packet[0] & 0xF0) == 0xB0 && unsubscribed.TrySetResult())
            {
                release.Wait(TestBroker.Timeout, CancellationToken.None); // the UNSUBACK, and what the broker sends after it, held
            }

            return packet;
        };
        var after = PersistentOptions(version, clientId).WithAddress($"tcp://127.0.0.1:{relay.Port}");
        after.Subscriptions.Add(($"$share/g/{topic}", MqttQualityOfServiceLevel.AtLeastOnce));
        after.StaleSubscriptions.Add(topic);
        await using var second = new BrokerConnection(after);
        var inbox = Inbox.Of(second);
        await using var publisher = new BrokerConnection(TestBroker.Options(version));
        await publisher.StartAsync(ct);

        var starting = second.StartAsync(ct);
        await unsubscribed.Task.WaitAsync(TestBroker.Timeout, ct);
        await publisher.PublishAsync(topic, "meanwhile"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct); // acknowledged: the broker routed it
        release.Set();
        await starting.WaitAsync(TestBroker.Timeout, ct);
        await publisher.PublishAsync(topic, "after"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);

        Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).ShouldBe("meanwhile");
        Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).ShouldBe("after");
    }

    /// <summary>A process subscribes on its first connect even when the broker kept the session: the session is what an
    /// earlier process left (an older version with fewer filters, or one whose renewal failed), and a filter added since
    /// was never subscribed while the session lived.</summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V500)]
    [InlineData(MqttProtocolVersion.V311)]
    public async Task GivenAKeptSession_WhenANewProcessHasAnotherFilter_ThenItsFirstConnectSubscribesIt(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("added");
        var clientId = "t-" + Guid.NewGuid().ToString("N")[..12];
        BrokerOptions Persistent()
        {
            var options = PersistentOptions(version, clientId);
            options.Subscriptions.Add((topic + "/kept", MqttQualityOfServiceLevel.AtLeastOnce));
            return options;
        }

        await using (var first = new BrokerConnection(Persistent()))
        {
            await first.StartAsync(ct);
        }

        var after = Persistent();
        after.Subscriptions.Add((topic + "/added", MqttQualityOfServiceLevel.AtLeastOnce));
        await using var second = new BrokerConnection(after);
        var inbox = Inbox.Of(second);
        await second.StartAsync(ct);
        await using var publisher = new BrokerConnection(TestBroker.Options(version));
        await publisher.StartAsync(ct);
        await publisher.PublishAsync(topic + "/added", "added"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await publisher.PublishAsync(topic + "/kept", "kept"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);

        (await inbox.ReceiveAsync(ct)).Topic.ShouldBe(topic + "/added");
        (await inbox.ReceiveAsync(ct)).Topic.ShouldBe(topic + "/kept");
        (await inbox.NothingAsync(TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue("each once");
    }

    /// <summary>mosquitto offers shared subscriptions to MQTT 5 clients (its CONNACK has no such property: absent means
    /// yes); MQTT 3.1.1 has no way to say so. The choice is made before subscribing.</summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V500, true)]
    [InlineData(MqttProtocolVersion.V311, false)]
    public async Task GivenAConnect_WhenTheBrokerAnswers_ThenSubscribingLearnsWhetherSharedSubscriptionsAreOffered(MqttProtocolVersion version, bool expected)
    {
        var ct = TestContext.Current.CancellationToken;
        var options = TestBroker.Options(version);
        var offered = new List<bool>();
        options.Subscribing = shared =>
        {
            offered.Add(shared);
            options.Subscriptions.Add((TestBroker.UniqueTopic("subscribing"), MqttQualityOfServiceLevel.AtLeastOnce));
        };
        await using var connection = new BrokerConnection(options);
        await connection.StartAsync(ct);
        offered.ShouldBe([expected]);
        connection.SharedSubscriptionsAvailable.ShouldBe(expected);
        options.Subscriptions.Count.ShouldBe(1);
    }

    [Fact]
    public async Task GivenNoBroker_WhenPublishing_ThenItWaitsForTheConnection_AndTimesOutWithAClearError()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = new BrokerOptions { ClientId = "nobody", OperationTimeout = TimeSpan.FromMilliseconds(500), ReconnectDelay = TimeSpan.FromMilliseconds(100) }
            .WithAddress("tcp://127.0.0.1:1");
        await using var client = new BrokerConnection(options);
        _ = client.StartAsync(ct);
        var error = await Should.ThrowAsync<TimeoutException>(() => client.PublishAsync("t/x", "x"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct));
        error.Message.ShouldContain("127.0.0.1:1");
    }
}
