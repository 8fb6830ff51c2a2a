using System.Text;

namespace Propeller.Mqtt.Tests;

/// <summary>Round trips through the shared mosquitto (PROPELLER_TEST_MQTT).</summary>
public sealed class BrokerRoundTripTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public static TheoryData<MqttProtocolVersion, MqttQualityOfService> Cases()
    {
        var data = new TheoryData<MqttProtocolVersion, MqttQualityOfService>();
        foreach (var version in new[] { MqttProtocolVersion.V311, MqttProtocolVersion.V500 })
        {
            foreach (var qos in new[] { MqttQualityOfService.AtMostOnce, MqttQualityOfService.AtLeastOnce, MqttQualityOfService.ExactlyOnce })
            {
                data.Add(version, qos);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task GivenSubscriber_WhenPublishingAtQos_ThenEveryMessageArrivesOnceInOrder(MqttProtocolVersion version, MqttQualityOfService qos)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("roundtrip");
        await using var subscriber = new MqttClient(TestBroker.Options(version));
        await using var publisher = new MqttClient(TestBroker.Options(version));
        await subscriber.ConnectAsync(ct);
        await publisher.ConnectAsync(ct);
        var granted = await subscriber.SubscribeAsync(topic, qos, ct);
        granted.ShouldBe([qos]);

        const int count = 200;
        var sends = Enumerable.Range(0, count)
            .Select(i => publisher.PublishAsync(topic, Encoding.UTF8.GetBytes($"m{i}"), qos, retain: false, ct))
            .ToList();
        await Task.WhenAll(sends);

        for (var i = 0; i < count; i++)
        {
            var message = await TestBroker.ReceiveAsync(subscriber, Timeout, ct);
            message.Topic.ShouldBe(topic);
            message.QualityOfService.ShouldBe(qos);
            Encoding.UTF8.GetString(message.Payload.Span).ShouldBe($"m{i}");
        }

        (await TestBroker.NothingReceivedAsync(subscriber, TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();
        (await InflightSettlesAsync(publisher, ct)).ShouldBe(0, $"window slots still taken after every {qos} publish over {version} completed");
    }

    /// <summary>The publisher's window once it settles (a slot is given back as its acknowledgement is handled).</summary>
    private static async Task<int> InflightSettlesAsync(MqttClient publisher, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (publisher.InflightCount != 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, ct);
        }

        return publisher.InflightCount;
    }

    [Fact]
    public async Task GivenManyQos1Publishes_WhenWindowIsThree_ThenNeverMoreThanThreeInFlight()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("window");
        var options = TestBroker.Options(MqttProtocolVersion.V311);
        options.MaxInflight = 3;
        await using var publisher = new MqttClient(options);
        await publisher.ConnectAsync(ct);
        var maxSeen = 0;
        var sends = new List<Task>();
        for (var i = 0; i < 300; i++)
        {
            sends.Add(publisher.PublishAsync(topic, new byte[16], MqttQualityOfService.AtLeastOnce, retain: false, ct));
            maxSeen = Math.Max(maxSeen, publisher.InflightCount);
        }

        await Task.WhenAll(sends);
        maxSeen.ShouldBeInRange(1, 3);
        (await InflightSettlesAsync(publisher, ct)).ShouldBe(0);
    }

    [Fact]
    public async Task GivenRetainedMessage_WhenSubscribingLater_ThenItArrivesFlaggedRetained_AndClearingRemovesIt()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("retained");
        await using var publisher = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await publisher.ConnectAsync(ct);
        await publisher.PublishAsync(topic, "kept"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: true, ct);

        await using (var late = new MqttClient(TestBroker.Options(MqttProtocolVersion.V500)))
        {
            await late.ConnectAsync(ct);
            await late.SubscribeAsync(topic, MqttQualityOfService.AtLeastOnce, ct);
            var message = await TestBroker.ReceiveAsync(late, Timeout, ct);
            message.Retain.ShouldBeTrue();
            Encoding.UTF8.GetString(message.Payload.Span).ShouldBe("kept");
        }

        await publisher.PublishAsync(topic, ReadOnlyMemory<byte>.Empty, MqttQualityOfService.AtLeastOnce, retain: true, ct);
        await using var later = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await later.ConnectAsync(ct);
        await later.SubscribeAsync(topic, MqttQualityOfService.AtLeastOnce, ct);
        (await TestBroker.NothingReceivedAsync(later, TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();
    }

    [Fact]
    public async Task GivenWildcardSubscriptions_WhenPublishingToManyTopics_ThenOnlyMatchingOnesArrive()
    {
        var ct = TestContext.Current.CancellationToken;
        var root = TestBroker.UniqueTopic("wildcards");
        await using var plus = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await using var hash = new MqttClient(TestBroker.Options(MqttProtocolVersion.V500));
        await using var publisher = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await plus.ConnectAsync(ct);
        await hash.ConnectAsync(ct);
        await publisher.ConnectAsync(ct);
        await plus.SubscribeAsync($"{root}/+/alive", MqttQualityOfService.AtLeastOnce, ct);
        await hash.SubscribeAsync($"{root}/a/#", MqttQualityOfService.AtLeastOnce, ct);

        foreach (var suffix in new[] { "a/alive", "b/alive", "a/b/alive", "a", "c/dead" })
        {
            await publisher.PublishAsync($"{root}/{suffix}", Encoding.UTF8.GetBytes(suffix), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        }

        var plusTopics = new[]
        {
            (await TestBroker.ReceiveAsync(plus, Timeout, ct)).Topic,
            (await TestBroker.ReceiveAsync(plus, Timeout, ct)).Topic,
        };
        plusTopics.ShouldBe([$"{root}/a/alive", $"{root}/b/alive"]);
        (await TestBroker.NothingReceivedAsync(plus, TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();

        var hashTopics = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            hashTopics.Add((await TestBroker.ReceiveAsync(hash, Timeout, ct)).Topic);
        }

        hashTopics.ShouldBe([$"{root}/a/alive", $"{root}/a/b/alive", $"{root}/a"]);
        (await TestBroker.NothingReceivedAsync(hash, TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();
    }

    [Fact]
    public async Task GivenUnsubscribe_WhenPublishing_ThenNothingArrives()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("unsubscribe");
        await using var client = new MqttClient(TestBroker.Options(MqttProtocolVersion.V500));
        await client.ConnectAsync(ct);
        await client.SubscribeAsync(topic, MqttQualityOfService.AtLeastOnce, ct);
        await client.UnsubscribeAsync(topic, ct);
        await client.PublishAsync(topic, "x"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        (await TestBroker.NothingReceivedAsync(client, TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();
    }

    [Fact]
    public async Task GivenMqtt5_WhenPublishingWithProperties_ThenUserPropertiesCorrelationAndExpiryArrive()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("v5props");
        await using var subscriber = new MqttClient(TestBroker.Options(MqttProtocolVersion.V500));
        await using var publisher = new MqttClient(TestBroker.Options(MqttProtocolVersion.V500));
        await subscriber.ConnectAsync(ct);
        await publisher.ConnectAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfService.ExactlyOnce, ct);

        await publisher.PublishAsync(
            new MqttMessage
            {
                Topic = topic,
                Payload = "{\"x\":1}"u8.ToArray(),
                QualityOfService = MqttQualityOfService.ExactlyOnce,
                MessageExpiryInterval = 60,
                PayloadIsUtf8 = true,
                ContentType = "application/json",
                ResponseTopic = topic + "/reply",
                CorrelationData = new byte[] { 1, 2, 3 },
                UserProperties = [new("correlation-id", "c-42"), new("causation-id", "x"), new("correlation-id", "again")],
            },
            ct);

        var message = await TestBroker.ReceiveAsync(subscriber, Timeout, ct);
        message.UserProperties.ShouldBe([new("correlation-id", "c-42"), new("causation-id", "x"), new("correlation-id", "again")]);
        message.ContentType.ShouldBe("application/json");
        message.ResponseTopic.ShouldBe(topic + "/reply");
        message.CorrelationData!.Value.ToArray().ShouldBe(new byte[] { 1, 2, 3 });
        message.PayloadIsUtf8.ShouldBe(true);
        message.MessageExpiryInterval!.Value.ShouldBeInRange(58u, 60u);
    }

    [Fact]
    public async Task GivenMqtt5Publisher_WhenSubscribingWithNoLocal_ThenOwnMessagesDoNotComeBack()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("nolocal");
        await using var client = new MqttClient(TestBroker.Options(MqttProtocolVersion.V500));
        await client.ConnectAsync(ct);
        await client.SubscribeAsync([new MqttSubscription(topic, MqttQualityOfService.AtLeastOnce) { NoLocal = true }], ct);
        await client.PublishAsync(topic, "self"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        (await TestBroker.NothingReceivedAsync(client, TimeSpan.FromMilliseconds(300), ct)).ShouldBeTrue();
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task GivenLastWill_WhenTheConnectionDropsWithoutDisconnect_ThenTheBrokerPublishesTheWill(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("will");
        await using var watcher = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await watcher.ConnectAsync(ct);
        await watcher.SubscribeAsync(topic, MqttQualityOfService.AtLeastOnce, ct);

        var options = TestBroker.Options(version);
        options.AutoReconnect = false;
        options.Will = new MqttMessage
        {
            Topic = topic,
            Payload = "{\"status\":\"offline\"}"u8.ToArray(),
            QualityOfService = MqttQualityOfService.AtLeastOnce,
        };
        await using var proplet = new MqttClient(options);
        await proplet.ConnectAsync(ct);
        (await TestBroker.NothingReceivedAsync(watcher, TimeSpan.FromMilliseconds(200), ct)).ShouldBeTrue();

        proplet.AbortConnection();

        var will = await TestBroker.ReceiveAsync(watcher, Timeout, ct);
        Encoding.UTF8.GetString(will.Payload.Span).ShouldBe("{\"status\":\"offline\"}");
    }

    [Fact]
    public async Task GivenLastWill_WhenDisconnectingCleanly_ThenNoWillIsPublished()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("nowill");
        await using var watcher = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await watcher.ConnectAsync(ct);
        await watcher.SubscribeAsync(topic, MqttQualityOfService.AtLeastOnce, ct);
        var options = TestBroker.Options(MqttProtocolVersion.V311);
        options.Will = new MqttMessage { Topic = topic, Payload = "gone"u8.ToArray() };
        await using var client = new MqttClient(options);
        await client.ConnectAsync(ct);
        await client.DisconnectAsync(ct);
        client.IsConnected.ShouldBeFalse();
        (await TestBroker.NothingReceivedAsync(watcher, TimeSpan.FromMilliseconds(500), ct)).ShouldBeTrue();
    }

    [Fact]
    public async Task GivenMessageHandler_WhenMessagesArrive_ThenTheHandlerSeesThemInOrder()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("handler");
        var seen = new List<string>();
        var done = new TaskCompletionSource();
        var options = TestBroker.Options(MqttProtocolVersion.V500);
        options.MessageHandler = async (message, token) =>
        {
            await Task.Yield();
            lock (seen)
            {
                seen.Add(Encoding.UTF8.GetString(message.Payload.Span));
                if (seen.Count == 50)
                {
                    done.TrySetResult();
                }
            }
        };
        await using var subscriber = new MqttClient(options);
        await using var publisher = new MqttClient(TestBroker.Options(MqttProtocolVersion.V500));
        await subscriber.ConnectAsync(ct);
        await publisher.ConnectAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfService.AtLeastOnce, ct);
        for (var i = 0; i < 50; i++)
        {
            await publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        }

        await done.Task.WaitAsync(Timeout, ct);
        seen.ShouldBe(Enumerable.Range(0, 50).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Theory]
    [InlineData(MqttQualityOfService.AtLeastOnce)]
    [InlineData(MqttQualityOfService.ExactlyOnce)]
    public async Task GivenBatchHandler_WhenMessagesArriveWhileItWorks_ThenTheyComeBatchedInOrder_AndAreAcknowledged(MqttQualityOfService qos)
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("batches");
        var seen = new List<string>();
        var batches = new List<int>();
        var done = new TaskCompletionSource();
        var options = TestBroker.Options(MqttProtocolVersion.V311);
        options.ClientId = "batch-" + Guid.NewGuid().ToString("N")[..8];
        options.CleanStart = false;
        options.MessageBatchHandler = async (messages, token) =>
        {
            // Slow on the first batch, so what arrives meanwhile gathers into the next ones.
            await Task.Delay(batches.Count == 0 ? 300 : 1, token);
            lock (seen)
            {
                batches.Add(messages.Count);
                seen.AddRange(messages.Select(m => Encoding.UTF8.GetString(m.Payload.Span)));
                if (seen.Count == 100)
                {
                    done.TrySetResult();
                }
            }
        };
        await using (var subscriber = new MqttClient(options))
        {
            await using var publisher = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
            await subscriber.ConnectAsync(ct);
            await publisher.ConnectAsync(ct);
            await subscriber.SubscribeAsync(topic, qos, ct);
            for (var i = 0; i < 100; i++)
            {
                await publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), qos, retain: false, ct);
            }

            await done.Task.WaitAsync(Timeout, ct);
            await Task.Delay(200, ct); // the last batch's acknowledgements reach the broker
            await subscriber.DisconnectAsync(ct);
        }

        seen.ShouldBe(Enumerable.Range(0, 100).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        batches.Max().ShouldBeGreaterThan(1);

        // Everything was acknowledged: the persistent session has nothing to redeliver.
        var again = new List<string>();
        options.MessageBatchHandler = (messages, _) =>
        {
            lock (again)
            {
                again.AddRange(messages.Select(m => Encoding.UTF8.GetString(m.Payload.Span)));
            }

            return ValueTask.CompletedTask;
        };
        await using var resumed = new MqttClient(options);
        await resumed.ConnectAsync(ct);
        await Task.Delay(500, ct);
        again.ShouldBeEmpty();
    }

    [Fact]
    public async Task GivenMessageHandler_WhenItPublishesAtQos2AndWaitsForTheAck_ThenNothingDeadlocks()
    {
        var ct = TestContext.Current.CancellationToken;
        var requests = TestBroker.UniqueTopic("requests");
        var results = TestBroker.UniqueTopic("results");
        MqttClient? self = null;
        var options = TestBroker.Options(MqttProtocolVersion.V311);
        options.MessageHandler = async (message, token) =>
            await self!.PublishAsync(results, message.Payload, MqttQualityOfService.ExactlyOnce, retain: false, token);
        await using var worker = new MqttClient(options);
        self = worker;
        await using var manager = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await worker.ConnectAsync(ct);
        await manager.ConnectAsync(ct);
        await worker.SubscribeAsync(requests, MqttQualityOfService.ExactlyOnce, ct);
        await manager.SubscribeAsync(results, MqttQualityOfService.ExactlyOnce, ct);

        for (var i = 0; i < 30; i++)
        {
            await manager.PublishAsync(requests, Encoding.UTF8.GetBytes($"task-{i}"), MqttQualityOfService.ExactlyOnce, retain: false, ct);
        }

        for (var i = 0; i < 30; i++)
        {
            Encoding.UTF8.GetString((await TestBroker.ReceiveAsync(manager, Timeout, ct)).Payload.Span).ShouldBe($"task-{i}");
        }
    }

    [Fact]
    public async Task GivenNotConnected_WhenPublishing_ThenAClearErrorIsRaised()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var client = new MqttClient(TestBroker.Options(MqttProtocolVersion.V311));
        await Should.ThrowAsync<MqttException>(() => client.PublishAsync("a/b", "x"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct));
        await Should.ThrowAsync<ArgumentException>(() => client.PublishAsync("a/+", "x"u8.ToArray(), MqttQualityOfService.AtMostOnce, retain: false, ct));
    }
}
