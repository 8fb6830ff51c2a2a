using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt.Tests;

/// <summary>Valid packets of every type, fixed and random (seeded), for codec round trips and fuzzing.</summary>
internal static class PacketSamples
{
    public static IEnumerable<MqttPacket> Fixed(MqttProtocolVersion version)
    {
        var v5 = version == MqttProtocolVersion.V500;
        MqttProperties? P(Func<MqttProperties> make) => v5 ? make() : null;

        yield return new MqttPacket.Connect(version, "client-1", true, 30, "user", "pw"u8.ToArray(),
            new MqttPacket.WillMessage("m/t/c/c/control/proplet/alive", "{\"status\":\"offline\"}"u8.ToArray(), MqttQualityOfService.AtLeastOnce, true,
                P(() => new MqttProperties { WillDelayInterval = 5, MessageExpiryInterval = 10, ContentType = "application/json" })),
            P(() => new MqttProperties { SessionExpiryInterval = 3600, ReceiveMaximum = 100, MaximumPacketSize = 1 << 20, TopicAliasMaximum = 8, UserProperties = [new("a", "b")] }));
        yield return new MqttPacket.Connect(version, string.Empty, true, 0, null, null, null, null);
        yield return new MqttPacket.ConnAck(true, 0, P(() => new MqttProperties
        {
            AssignedClientIdentifier = "auto-1",
            ServerKeepAlive = 20,
            ReceiveMaximum = 20,
            MaximumQos = 1,
            RetainAvailable = 1,
            MaximumPacketSize = 100_000,
            TopicAliasMaximum = 10,
            ReasonString = "ok",
            WildcardSubscriptionAvailable = 1,
            SubscriptionIdentifierAvailable = 0,
            SharedSubscriptionAvailable = 1,
        }));
        yield return new MqttPacket.Publish("a/b", "hello"u8.ToArray(), MqttQualityOfService.AtMostOnce, false, false, 0, null);
        yield return new MqttPacket.Publish("a/b/c", new byte[300], MqttQualityOfService.AtLeastOnce, true, true, 7, P(() => new MqttProperties
        {
            PayloadFormatIndicator = 1,
            MessageExpiryInterval = 60,
            ContentType = "text/plain",
            ResponseTopic = "r/1",
            CorrelationData = [1, 2, 3],
            UserProperties = [new("correlation-id", "c-1"), new("correlation-id", "c-2")],
            TopicAlias = 3,
            SubscriptionIdentifiers = [1, 268_435_455],
        }));
        yield return new MqttPacket.Publish("ü/€", ReadOnlyMemory<byte>.Empty, MqttQualityOfService.ExactlyOnce, false, false, 65535, null);
        foreach (var kind in new[] { MqttPacketType.PubAck, MqttPacketType.PubRec, MqttPacketType.PubRel, MqttPacketType.PubComp })
        {
            yield return new MqttPacket.PublishAck(kind, 42, 0, null);
            if (v5)
            {
                yield return new MqttPacket.PublishAck(kind, 43, 0x92, null);
                yield return new MqttPacket.PublishAck(kind, 44, 0x10, new MqttProperties { ReasonString = "why", UserProperties = [new("k", "v")] });
            }
        }

        yield return new MqttPacket.Subscribe(9, [new("a/+/c", 1), new("#", 2)], P(() => new MqttProperties { SubscriptionIdentifiers = [5] }));
        if (v5)
        {
            yield return new MqttPacket.Subscribe(10, [new("x", 0x2D)], null);
        }

        yield return new MqttPacket.SubAck(9, v5 ? [0, 1, 2, 0x80, 0x87] : [0, 1, 2, 0x80], P(() => new MqttProperties { ReasonString = "partial" }));
        yield return new MqttPacket.Unsubscribe(11, ["a/+/c", "#"], P(() => new MqttProperties { UserProperties = [new("u", "1")] }));
        yield return new MqttPacket.UnsubAck(11, v5 ? [0, 0x11] : [], null);
        yield return MqttPacket.PingReq.Instance;
        yield return MqttPacket.PingResp.Instance;
        yield return new MqttPacket.Disconnect(0, null);
        if (v5)
        {
            yield return new MqttPacket.Disconnect(0x8E, new MqttProperties { ReasonString = "taken over", SessionExpiryInterval = 0, ServerReference = "other" });
            yield return new MqttPacket.Auth(0x18, new MqttProperties { AuthenticationMethod = "SCRAM", AuthenticationData = [9, 9] });
            yield return new MqttPacket.Auth(0, null);
        }
    }

    public static MqttPacket Random(Random random, MqttProtocolVersion version)
    {
        var v5 = version == MqttProtocolVersion.V500;
        var id = (ushort)random.Next(1, 65536);
        switch (random.Next(10))
        {
            case 0:
            case 1:
            case 2:
                var qos = (MqttQualityOfService)random.Next(3);
                return new MqttPacket.Publish(
                    Topic(random),
                    Bytes(random, random.Next(4) == 0 ? 2000 : 64),
                    qos,
                    random.Next(2) == 0,
                    qos != MqttQualityOfService.AtMostOnce && random.Next(2) == 0,
                    qos == MqttQualityOfService.AtMostOnce ? (ushort)0 : id,
                    v5 && random.Next(2) == 0 ? new MqttProperties
                    {
                        MessageExpiryInterval = random.Next(2) == 0 ? (uint)random.Next() : null,
                        ContentType = random.Next(2) == 0 ? Text(random) : null,
                        CorrelationData = random.Next(2) == 0 ? Bytes(random, 16) : null,
                        UserProperties = random.Next(2) == 0 ? [new(Text(random), Text(random)), new(Text(random), Text(random))] : null,
                        TopicAlias = random.Next(3) == 0 ? (ushort)random.Next(1, 100) : null,
                    }
                    : null);
            case 3:
                return new MqttPacket.PublishAck((MqttPacketType)random.Next(4, 8), id, v5 && random.Next(2) == 0 ? (byte)0x80 : (byte)0,
                    v5 && random.Next(3) == 0 ? new MqttProperties { ReasonString = Text(random) } : null);
            case 4:
                return new MqttPacket.Subscribe(id, [new(Topic(random), (byte)random.Next(3)), new("+/x/#", 1)], null);
            case 5:
                return new MqttPacket.SubAck(id, [(byte)random.Next(3), 0x80], null);
            case 6:
                return new MqttPacket.Unsubscribe(id, [Topic(random)], null);
            case 7:
                return new MqttPacket.UnsubAck(id, v5 ? [0] : [], null);
            case 8:
                return new MqttPacket.ConnAck(random.Next(2) == 0, 0, v5 ? new MqttProperties { ReceiveMaximum = (ushort)random.Next(1, 1000) } : null);
            default:
                return new MqttPacket.Connect(version, Text(random), random.Next(2) == 0, (ushort)random.Next(65536),
                    random.Next(2) == 0 ? Text(random) : null, random.Next(2) == 0 ? Bytes(random, 8) : null,
                    random.Next(2) == 0 ? new MqttPacket.WillMessage(Topic(random), Bytes(random, 8), MqttQualityOfService.AtLeastOnce, false, null) : null,
                    null);
        }
    }

    private static string Topic(Random random) => string.Join('/', Enumerable.Range(0, random.Next(1, 4)).Select(_ => Text(random) + "t"));

    private static string Text(Random random)
    {
        const string alphabet = "abcxyz019-_ äß€";
        return string.Create(random.Next(0, 12), random, static (span, r) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = alphabet[r.Next(alphabet.Length)];
            }
        });
    }

    private static byte[] Bytes(Random random, int max)
    {
        var bytes = new byte[random.Next(max)];
        random.NextBytes(bytes);
        return bytes;
    }
}
