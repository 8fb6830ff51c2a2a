using System.Text;
using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt.Tests;

public sealed class ScriptedBrokerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static MqttPacket.Publish Publish(string topic, string payload, MqttQualityOfService qos, ushort id, bool dup = false, MqttProperties? properties = null) =>
        new(topic, Encoding.UTF8.GetBytes(payload), qos, false, dup, id, properties);

    private static MqttPacket.PublishAck Ack(MqttPacketType kind, ushort id) => new(kind, id, 0, null);

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task GivenQos2Redelivery_WhenTheSamePacketIdArrivesTwiceBeforePubRel_ThenItIsDeliveredOnce(MqttProtocolVersion version)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(version));
        var connecting = client.ConnectAsync(ct);
        var (session, _) = await broker.AcceptAsync(ct);
        await using var _ = session;
        await session.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;

        await session.SendAsync(Publish("a/b", "one", MqttQualityOfService.ExactlyOnce, 5), ct);
        (await session.ReadAsync(ct)).ShouldBe(Ack(MqttPacketType.PubRec, 5));
        await session.SendAsync(Publish("a/b", "one", MqttQualityOfService.ExactlyOnce, 5, dup: true), ct);
        (await session.ReadAsync(ct)).ShouldBe(Ack(MqttPacketType.PubRec, 5));
        await session.SendAsync(Ack(MqttPacketType.PubRel, 5), ct);
        (await session.ReadAsync(ct)).ShouldBe(Ack(MqttPacketType.PubComp, 5));
        await session.SendAsync(Publish("a/b", "two", MqttQualityOfService.ExactlyOnce, 5), ct);
        (await session.ReadAsync(ct)).ShouldBe(Ack(MqttPacketType.PubRec, 5));
        await session.SendAsync(Publish("a/b", "three", MqttQualityOfService.AtLeastOnce, 6), ct);
        (await session.ReadAsync(ct)).ShouldBe(Ack(MqttPacketType.PubAck, 6));

        Encoding.UTF8.GetString((await TestBroker.ReceiveAsync(client, Timeout, ct)).Payload.Span).ShouldBe("one");
        Encoding.UTF8.GetString((await TestBroker.ReceiveAsync(client, Timeout, ct)).Payload.Span).ShouldBe("two");
        Encoding.UTF8.GetString((await TestBroker.ReceiveAsync(client, Timeout, ct)).Payload.Span).ShouldBe("three");
        (await TestBroker.NothingReceivedAsync(client, TimeSpan.FromMilliseconds(200), ct)).ShouldBeTrue();
    }

    [Fact]
    public async Task GivenPersistentSession_WhenTheConnectionDropsWithUnackedPublishes_ThenTheyAreResentWithDupAndPubRelIsResent()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        var options = broker.Options(MqttProtocolVersion.V500);
        options.CleanStart = false;
        options.SessionExpiryInterval = 3600;
        await using var client = new MqttClient(options);
        var connecting = client.ConnectAsync(ct);
        var (first, connect) = await broker.AcceptAsync(ct);
        connect.CleanStart.ShouldBeFalse();
        connect.Properties!.SessionExpiryInterval.ShouldBe(3600u);
        await first.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;

        var qos1 = client.PublishAsync("t/1", "a"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        var qos2 = client.PublishAsync("t/2", "b"u8.ToArray(), MqttQualityOfService.ExactlyOnce, retain: false, ct);
        var p1 = (MqttPacket.Publish)await first.ReadAsync(ct);
        var p2 = (MqttPacket.Publish)await first.ReadAsync(ct);
        p1.Dup.ShouldBeFalse();
        await first.SendAsync(Ack(MqttPacketType.PubRec, p2.PacketId), ct);
        (await first.ReadAsync(ct)).ShouldBe(Ack(MqttPacketType.PubRel, p2.PacketId));
        await first.DisposeAsync();

        var (second, reconnect) = await broker.AcceptAsync(ct);
        await using var _ = second;
        reconnect.CleanStart.ShouldBeFalse();
        await second.SendAsync(new MqttPacket.ConnAck(true, 0, null), ct);
        var resent = (MqttPacket.Publish)await second.ReadAsync(ct);
        resent.PacketId.ShouldBe(p1.PacketId);
        resent.Dup.ShouldBeTrue();
        Encoding.UTF8.GetString(resent.Payload.Span).ShouldBe("a");
        (await second.ReadAsync(ct)).ShouldBe(Ack(MqttPacketType.PubRel, p2.PacketId));
        qos1.IsCompleted.ShouldBeFalse();
        await second.SendAsync(Ack(MqttPacketType.PubAck, p1.PacketId), ct);
        await second.SendAsync(Ack(MqttPacketType.PubComp, p2.PacketId), ct);
        await qos1.WaitAsync(Timeout, ct);
        await qos2.WaitAsync(Timeout, ct);
        client.InflightCount.ShouldBe(0);
    }

    [Fact]
    public async Task GivenLostSession_WhenReconnecting_ThenTheClientResubscribesAndResendsWithoutDup()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(MqttProtocolVersion.V311));
        var connecting = client.ConnectAsync(ct);
        var (first, _) = await broker.AcceptAsync(ct);
        await first.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;
        var subscribing = client.SubscribeAsync("m/+/alive", MqttQualityOfService.ExactlyOnce, ct);
        var subscribe = (MqttPacket.Subscribe)await first.ReadAsync(ct);
        await first.SendAsync(new MqttPacket.SubAck(subscribe.PacketId, [2], null), ct);
        (await subscribing).ShouldBe([MqttQualityOfService.ExactlyOnce]);
        var publishing = client.PublishAsync("t", "x"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        var original = (MqttPacket.Publish)await first.ReadAsync(ct);
        await first.DisposeAsync();

        var (second, _) = await broker.AcceptAsync(ct);
        await using var __ = second;
        await second.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        var resubscribe = (MqttPacket.Subscribe)await second.ReadAsync(ct);
        resubscribe.Entries.ShouldBe([new MqttPacket.SubscribeEntry("m/+/alive", 2)]);
        await second.SendAsync(new MqttPacket.SubAck(resubscribe.PacketId, [2], null), ct);
        var resent = (MqttPacket.Publish)await second.ReadAsync(ct);
        resent.Dup.ShouldBeFalse();
        resent.PacketId.ShouldBe(original.PacketId);
        await second.SendAsync(Ack(MqttPacketType.PubAck, resent.PacketId), ct);
        await publishing.WaitAsync(Timeout, ct);
    }

    [Fact]
    public async Task GivenMalformedPacketFromTheBroker_WhenReceived_ThenTheClientClosesWithReasonAndReconnects()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(MqttProtocolVersion.V500));
        var connecting = client.ConnectAsync(ct);
        var (first, _) = await broker.AcceptAsync(ct);
        await using var _ = first;
        await first.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;

        await first.SendRawAsync([0x36, 0x03, 0x00, 0x01, 0x61], ct);
        (await first.ReadAsync(ct)).ShouldBe(new MqttPacket.Disconnect(0x81, null));
        (await first.ClosedByClientAsync(Timeout, ct)).ShouldBeTrue();

        var (second, _) = await broker.AcceptAsync(ct);
        await using var __ = second;
        await second.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await second.SendAsync(Publish("after", "ok", MqttQualityOfService.AtMostOnce, 0), ct);
        (await TestBroker.ReceiveAsync(client, Timeout, ct)).Topic.ShouldBe("after");
    }

    [Fact]
    public async Task GivenOversizedPacketFromTheBroker_WhenOnlyItsHeaderArrived_ThenTheClientClosesTheConnection()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        var options = broker.Options(MqttProtocolVersion.V311);
        options.MaxPacketSize = 1024;
        options.AutoReconnect = false;
        await using var client = new MqttClient(options);
        var connecting = client.ConnectAsync(ct);
        var (session, _) = await broker.AcceptAsync(ct);
        await using var _ = session;
        await session.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;

        await session.SendRawAsync([0x30, 0x80, 0x80, 0x80, 0x01], ct);
        (await session.ClosedByClientAsync(Timeout, ct)).ShouldBeTrue();
        await Should.ThrowAsync<MqttException>(() => client.PublishAsync("x", "y"u8.ToArray(), MqttQualityOfService.AtMostOnce, retain: false, ct));
    }

    [Fact]
    public async Task GivenSilentBroker_WhenKeepAliveElapses_ThenTheClientPingsThenDropsTheDeadConnectionAndReconnects()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        var options = broker.Options(MqttProtocolVersion.V311);
        options.KeepAlive = TimeSpan.FromSeconds(1);
        await using var client = new MqttClient(options);
        var connecting = client.ConnectAsync(ct);
        var (first, connect) = await broker.AcceptAsync(ct);
        await using var _ = first;
        connect.KeepAliveSeconds.ShouldBe((ushort)1);
        await first.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;

        (await first.ReadAsync(ct)).ShouldBeOfType<MqttPacket.PingReq>();
        (await first.ClosedByClientAsync(TimeSpan.FromSeconds(5), ct)).ShouldBeTrue();
        var (second, _) = await broker.AcceptAsync(ct);
        await using var __ = second;
        await second.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        (await second.ReadAsync(ct)).ShouldBeOfType<MqttPacket.PingReq>();
        await second.SendAsync(MqttPacket.PingResp.Instance, ct);
        (await second.ReadAsync(ct)).ShouldBeOfType<MqttPacket.PingReq>();
    }

    [Fact]
    public async Task GivenMqtt5TopicAliases_WhenTheBrokerUsesThem_ThenTopicsAreResolved_AndAnUnknownAliasClosesTheConnection()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        var options = broker.Options(MqttProtocolVersion.V500);
        options.TopicAliasMaximum = 4;
        options.AutoReconnect = false;
        await using var client = new MqttClient(options);
        var connecting = client.ConnectAsync(ct);
        var (session, connect) = await broker.AcceptAsync(ct);
        await using var _ = session;
        connect.Properties!.TopicAliasMaximum.ShouldBe((ushort)4);
        await session.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;

        await session.SendAsync(Publish("m/t/c/c/control/manager/start", "1", MqttQualityOfService.AtMostOnce, 0, properties: new MqttProperties { TopicAlias = 2 }), ct);
        await session.SendAsync(new MqttPacket.Publish(string.Empty, "2"u8.ToArray(), MqttQualityOfService.AtMostOnce, false, false, 0, new MqttProperties { TopicAlias = 2 }), ct);
        (await TestBroker.ReceiveAsync(client, Timeout, ct)).Topic.ShouldBe("m/t/c/c/control/manager/start");
        (await TestBroker.ReceiveAsync(client, Timeout, ct)).Topic.ShouldBe("m/t/c/c/control/manager/start");

        await session.SendAsync(new MqttPacket.Publish(string.Empty, "3"u8.ToArray(), MqttQualityOfService.AtMostOnce, false, false, 0, new MqttProperties { TopicAlias = 3 }), ct);
        (await session.ReadAsync(ct)).ShouldBe(new MqttPacket.Disconnect(0x94, null));
        (await session.ClosedByClientAsync(Timeout, ct)).ShouldBeTrue();
    }

    [Fact]
    public async Task GivenBrokerRejectsPublish_WhenTheAckCarriesAFailureCode_ThenPublishAsyncThrowsWithTheCode()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(MqttProtocolVersion.V500));
        var connecting = client.ConnectAsync(ct);
        var (session, _) = await broker.AcceptAsync(ct);
        await using var _ = session;
        await session.SendAsync(new MqttPacket.ConnAck(false, 0, new MqttProperties { ReceiveMaximum = 1 }), ct);
        await connecting;

        var first = client.PublishAsync("denied", "x"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        var second = client.PublishAsync("later", "y"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct);
        var p1 = (MqttPacket.Publish)await session.ReadAsync(ct);
        client.InflightCount.ShouldBe(1);
        await session.SendAsync(new MqttPacket.PublishAck(MqttPacketType.PubAck, p1.PacketId, 0x87, null), ct);
        var error = await Should.ThrowAsync<MqttException>(() => first);
        error.ReasonCode.ShouldBe((byte)0x87);
        var p2 = (MqttPacket.Publish)await session.ReadAsync(ct);
        p2.Topic.ShouldBe("later");
        await session.SendAsync(new MqttPacket.PublishAck(MqttPacketType.PubAck, p2.PacketId, 0x10, null), ct);
        await second.WaitAsync(Timeout, ct);
    }

    [Fact]
    public async Task GivenBrokerRefusesConnect_WhenConnecting_ThenMqttConnectExceptionCarriesTheReason()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(MqttProtocolVersion.V500));
        var connecting = client.ConnectAsync(ct);
        var (session, _) = await broker.AcceptAsync(ct);
        await using var _ = session;
        await session.SendAsync(new MqttPacket.ConnAck(false, 0x86, new MqttProperties { ReasonString = "nope" }), ct);
        var error = await Should.ThrowAsync<MqttConnectException>(() => connecting);
        error.IsAuthenticationFailure.ShouldBeTrue();
        error.Message.ShouldContain("bad user name or password");
        error.Message.ShouldContain("nope");
        client.IsConnected.ShouldBeFalse();
    }

    [Fact]
    public async Task GivenThousandsOfPublishesWaitingForTheWindow_WhenDisconnecting_ThenAllFailPromptly()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(MqttProtocolVersion.V500));
        var connecting = client.ConnectAsync(ct);
        var (session, _) = await broker.AcceptAsync(ct);
        await using var _ = session;
        await session.SendAsync(new MqttPacket.ConnAck(false, 0, new MqttProperties { ReceiveMaximum = 1 }), ct);
        await connecting;

        var publishes = Enumerable.Range(0, 20_000)
            .Select(i => client.PublishAsync("t", "x"u8.ToArray(), MqttQualityOfService.AtLeastOnce, retain: false, ct))
            .ToList();
        (await session.ReadAsync(ct)).ShouldBeOfType<MqttPacket.Publish>();
        await client.DisconnectAsync(ct);

        foreach (var publish in publishes)
        {
            await Should.ThrowAsync<MqttException>(() => publish.WaitAsync(Timeout, ct));
        }

        client.InflightCount.ShouldBe(0);
    }

    [Fact]
    public async Task GivenBrokerRefusesASubscription_WhenSubscribing_ThenMqttExceptionCarriesTheCode_AndItIsNotRenewedOnReconnect()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(MqttProtocolVersion.V311));
        var connecting = client.ConnectAsync(ct);
        var (first, _) = await broker.AcceptAsync(ct);
        await first.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;

        var subscribing = client.SubscribeAsync(
            [new MqttSubscription("allowed/#", MqttQualityOfService.AtLeastOnce), new MqttSubscription("forbidden/#", MqttQualityOfService.AtLeastOnce)],
            ct);
        var subscribe = (MqttPacket.Subscribe)await first.ReadAsync(ct);
        await first.SendAsync(new MqttPacket.SubAck(subscribe.PacketId, [1, 0x80], null), ct);
        var error = await Should.ThrowAsync<MqttException>(() => subscribing);
        error.ReasonCode.ShouldBe((byte)0x80);
        error.Message.ShouldContain("forbidden/#");
        await first.DisposeAsync();

        var (second, _) = await broker.AcceptAsync(ct);
        await using var _ = second;
        await second.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        var resubscribe = (MqttPacket.Subscribe)await second.ReadAsync(ct);
        resubscribe.Entries.Select(e => e.Filter).ShouldBe(["allowed/#"]);
    }

    [Fact]
    public async Task GivenQos0PublishWhileReconnecting_WhenTheConnectionComesBack_ThenItIsSentOnTheNewConnection()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.Options(MqttProtocolVersion.V311));
        var connecting = client.ConnectAsync(ct);
        var (first, _) = await broker.AcceptAsync(ct);
        await first.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;
        await first.DisposeAsync();
        while (client.IsConnected)
        {
            await Task.Delay(10, ct);
        }

        var publishing = client.PublishAsync("late", "x"u8.ToArray(), MqttQualityOfService.AtMostOnce, retain: false, ct);
        var (second, _) = await broker.AcceptAsync(ct);
        await using var _ = second;
        await second.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        ((MqttPacket.Publish)await second.ReadAsync(ct)).Topic.ShouldBe("late");
        await publishing.WaitAsync(Timeout, ct);
    }

    [Fact]
    public async Task GivenConsumerReadingMessages_WhenTheClientIsDisposed_ThenTheChannelCompletes()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = new ScriptedBroker();
        var client = new MqttClient(broker.Options(MqttProtocolVersion.V500));
        var connecting = client.ConnectAsync(ct);
        var (session, _) = await broker.AcceptAsync(ct);
        await using var _ = session;
        await session.SendAsync(new MqttPacket.ConnAck(false, 0, null), ct);
        await connecting;
        var consumer = Task.Run(
            async () =>
            {
                var count = 0;
                await foreach (var message in client.Messages.ReadAllAsync(ct))
                {
                    count++;
                }

                return count;
            },
            ct);
        await session.SendAsync(Publish("a", "1", MqttQualityOfService.AtMostOnce, 0), ct);
        await client.DisposeAsync();
        (await session.ReadAsync(ct)).ShouldBe(new MqttPacket.Disconnect(0, null));
        (await consumer.WaitAsync(Timeout, ct)).ShouldBeLessThanOrEqualTo(1);
        await Should.ThrowAsync<ObjectDisposedException>(() => client.PublishAsync("a", "x"u8.ToArray(), MqttQualityOfService.AtMostOnce, retain: false, ct));
    }
}
