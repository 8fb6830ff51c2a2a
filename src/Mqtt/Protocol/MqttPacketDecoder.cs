using System.Buffers;

namespace Propeller.Mqtt.Protocol;

/// <summary>The strict MQTT 3.1.1/5 decoder. It never throws on input, rejects a packet larger than the configured
/// maximum from its fixed header alone (before the body arrives), and allocates only for what it has actually read.</summary>
internal static class MqttPacketDecoder
{
    /// <summary>Decodes one packet from the start of <paramref name="buffer"/>; on success the buffer is advanced past it.</summary>
    public static MqttDecodeStatus TryDecode(
        ref ReadOnlySequence<byte> buffer,
        MqttProtocolVersion version,
        int maxPacketSize,
        out MqttPacket? packet,
        out string? error)
    {
        packet = null;
        error = null;
        if (buffer.Length < 2)
        {
            return MqttDecodeStatus.NeedMoreData;
        }

        Span<byte> header = stackalloc byte[5];
        var available = (int)Math.Min(5, buffer.Length);
        buffer.Slice(0, available).CopyTo(header);
        var remaining = 0;
        var shift = 0;
        var index = 1;
        while (true)
        {
            if (index == 5)
            {
                error = "remaining length longer than 4 bytes";
                return MqttDecodeStatus.Malformed;
            }

            if (index >= available)
            {
                return MqttDecodeStatus.NeedMoreData;
            }

            var b = header[index++];
            remaining |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                if (b == 0 && index > 2)
                {
                    error = "remaining length not minimally encoded";
                    return MqttDecodeStatus.Malformed;
                }

                break;
            }

            shift += 7;
        }

        var total = (long)index + remaining;
        if (total > maxPacketSize)
        {
            error = $"packet of {total} bytes exceeds the maximum packet size {maxPacketSize}";
            return MqttDecodeStatus.Malformed;
        }

        if (buffer.Length < total)
        {
            return MqttDecodeStatus.NeedMoreData;
        }

        var body = buffer.Slice(index, remaining);
        if (body.IsSingleSegment)
        {
            packet = DecodeBody(header[0], body.FirstSpan, version, out error);
        }
        else
        {
            var rented = ArrayPool<byte>.Shared.Rent(remaining);
            try
            {
                body.CopyTo(rented);
                packet = DecodeBody(header[0], rented.AsSpan(0, remaining), version, out error);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        if (packet is null)
        {
            return MqttDecodeStatus.Malformed;
        }

        buffer = buffer.Slice(total);
        return MqttDecodeStatus.Packet;
    }

    /// <summary>Decodes a packet body given its first fixed-header byte. Returns null with <paramref name="error"/> set
    /// when the body is malformed.</summary>
    public static MqttPacket? DecodeBody(byte first, ReadOnlySpan<byte> body, MqttProtocolVersion version, out string? error)
    {
        var type = (MqttPacketType)(first >> 4);
        var flags = first & 0x0F;
        var expectedFlags = type is MqttPacketType.PubRel or MqttPacketType.Subscribe or MqttPacketType.Unsubscribe ? 2 : 0;
        if (type != MqttPacketType.Publish && flags != expectedFlags)
        {
            error = $"invalid fixed header flags 0x{flags:X} for {type}";
            return null;
        }

        var reader = new MqttSpanReader(body);
        var v5 = version == MqttProtocolVersion.V500;
        MqttPacket? packet = type switch
        {
            MqttPacketType.Connect => ReadConnect(ref reader),
            MqttPacketType.ConnAck => ReadConnAck(ref reader, v5),
            MqttPacketType.Publish => ReadPublish(ref reader, flags, v5),
            MqttPacketType.PubAck or MqttPacketType.PubRec or MqttPacketType.PubRel or MqttPacketType.PubComp
                => ReadPublishAck(ref reader, type, v5),
            MqttPacketType.Subscribe => ReadSubscribe(ref reader, v5),
            MqttPacketType.SubAck => ReadSubAck(ref reader, v5),
            MqttPacketType.Unsubscribe => ReadUnsubscribe(ref reader, v5),
            MqttPacketType.UnsubAck => ReadUnsubAck(ref reader, v5),
            MqttPacketType.PingReq => MqttPacket.PingReq.Instance,
            MqttPacketType.PingResp => MqttPacket.PingResp.Instance,
            MqttPacketType.Disconnect => ReadDisconnect(ref reader, v5),
            MqttPacketType.Auth when v5 => ReadAuth(ref reader),
            _ => Fail(ref reader, $"invalid packet type {(int)type}"),
        };

        if (reader.Ok && reader.Remaining != 0)
        {
            reader.Fail($"{reader.Remaining} unexpected trailing bytes in {type}");
        }

        error = reader.Error;
        return reader.Ok ? packet : null;
    }

    private static MqttPacket? Fail(ref MqttSpanReader reader, string error)
    {
        reader.Fail(error);
        return null;
    }

    private static MqttPacket.Connect? ReadConnect(ref MqttSpanReader reader)
    {
        var name = reader.ReadString();
        var level = reader.ReadByte();
        if (!reader.Ok)
        {
            return null;
        }

        if (!string.Equals(name, "MQTT", StringComparison.Ordinal) || level is not (4 or 5))
        {
            reader.Fail($"unsupported protocol '{name}' level {level}");
            return null;
        }

        var version = (MqttProtocolVersion)level;
        var v5 = version == MqttProtocolVersion.V500;
        var flags = reader.ReadByte();
        var willFlag = (flags & 0x04) != 0;
        var willQos = (flags >> 3) & 0x03;
        var willRetain = (flags & 0x20) != 0;
        var hasPassword = (flags & 0x40) != 0;
        var hasUsername = (flags & 0x80) != 0;
        if ((flags & 0x01) != 0 || willQos == 3 || (!willFlag && (willQos != 0 || willRetain)) || (!v5 && hasPassword && !hasUsername))
        {
            reader.Fail($"invalid connect flags 0x{flags:X2}");
            return null;
        }

        var keepAlive = reader.ReadUInt16();
        var properties = v5 ? ReadProperties(ref reader, MqttPropertyContext.Connect) : null;
        var clientId = reader.ReadString();
        MqttPacket.WillMessage? will = null;
        if (willFlag)
        {
            var willProperties = v5 ? ReadProperties(ref reader, MqttPropertyContext.Will) : null;
            var topic = reader.ReadString();
            var payload = reader.ReadBinary();
            if (reader.Ok && !IsValidTopicName(topic))
            {
                reader.Fail("invalid will topic");
            }

            will = new MqttPacket.WillMessage(topic, payload, (MqttQualityOfService)willQos, willRetain, willProperties);
        }

        var username = hasUsername ? reader.ReadString() : null;
        var password = hasPassword ? reader.ReadBinary() : null;
        return reader.Ok
            ? new MqttPacket.Connect(version, clientId, (flags & 0x02) != 0, keepAlive, username, password, will, properties)
            : null;
    }

    private static MqttPacket.ConnAck? ReadConnAck(ref MqttSpanReader reader, bool v5)
    {
        var ackFlags = reader.ReadByte();
        var code = reader.ReadByte();
        if (reader.Ok && (ackFlags & 0xFE) != 0)
        {
            reader.Fail($"invalid connack flags 0x{ackFlags:X2}");
        }

        var properties = v5 ? ReadProperties(ref reader, MqttPropertyContext.ConnAck) : null;
        return reader.Ok ? new MqttPacket.ConnAck((ackFlags & 0x01) != 0, code, properties) : null;
    }

    private static MqttPacket.Publish? ReadPublish(ref MqttSpanReader reader, int flags, bool v5)
    {
        var qos = (flags >> 1) & 0x03;
        var dup = (flags & 0x08) != 0;
        if (qos == 3 || (qos == 0 && dup))
        {
            reader.Fail($"invalid publish flags 0x{flags:X}");
            return null;
        }

        var topic = reader.ReadString();
        ushort packetId = 0;
        if (qos > 0)
        {
            packetId = reader.ReadUInt16();
            if (reader.Ok && packetId == 0)
            {
                reader.Fail("publish packet identifier 0");
            }
        }

        var properties = v5 ? ReadProperties(ref reader, MqttPropertyContext.Publish) : null;
        if (!reader.Ok)
        {
            return null;
        }

        if (topic.Length == 0 ? properties?.TopicAlias is null : !IsValidTopicName(topic))
        {
            reader.Fail("invalid publish topic name");
            return null;
        }

        var payload = reader.ReadRest().ToArray();
        return new MqttPacket.Publish(topic, payload, (MqttQualityOfService)qos, (flags & 0x01) != 0, dup, packetId, properties);
    }

    private static MqttPacket.PublishAck? ReadPublishAck(ref MqttSpanReader reader, MqttPacketType type, bool v5)
    {
        var packetId = ReadPacketId(ref reader);
        byte code = 0;
        MqttProperties? properties = null;
        if (v5 && reader.Remaining > 0)
        {
            code = reader.ReadByte();
            if (reader.Remaining > 0)
            {
                properties = ReadProperties(ref reader, MqttPropertyContext.PublishAck);
            }
        }

        return reader.Ok ? new MqttPacket.PublishAck(type, packetId, code, properties) : null;
    }

    private static MqttPacket.Subscribe? ReadSubscribe(ref MqttSpanReader reader, bool v5)
    {
        var packetId = ReadPacketId(ref reader);
        var properties = v5 ? ReadProperties(ref reader, MqttPropertyContext.Subscribe) : null;
        var entries = new List<MqttPacket.SubscribeEntry>();
        while (reader.Ok && reader.Remaining > 0)
        {
            var filter = reader.ReadString();
            var options = reader.ReadByte();
            if (!reader.Ok)
            {
                break;
            }

            var invalidOptions = v5
                ? (options & 0xC0) != 0 || (options & 0x03) == 3 || ((options >> 4) & 0x03) == 3
                : (options & 0xFC) != 0 || (options & 0x03) == 3;
            if (invalidOptions || !MqttTopic.IsValidFilter(filter))
            {
                reader.Fail("invalid subscription");
                break;
            }

            entries.Add(new MqttPacket.SubscribeEntry(filter, options));
        }

        if (reader.Ok && entries.Count == 0)
        {
            reader.Fail("subscribe without topic filters");
        }

        return reader.Ok ? new MqttPacket.Subscribe(packetId, entries, properties) : null;
    }

    private static MqttPacket.SubAck? ReadSubAck(ref MqttSpanReader reader, bool v5)
    {
        var packetId = ReadPacketId(ref reader);
        var properties = v5 ? ReadProperties(ref reader, MqttPropertyContext.SubAck) : null;
        var codes = reader.ReadRest();
        if (reader.Ok && codes.IsEmpty)
        {
            reader.Fail("suback without reason codes");
        }

        foreach (var code in codes)
        {
            var valid = v5
                ? code is 0 or 1 or 2 or 0x80 or 0x83 or 0x87 or 0x8F or 0x91 or 0x97 or 0x9E or 0xA1 or 0xA2
                : code is 0 or 1 or 2 or 0x80;
            if (!valid)
            {
                reader.Fail($"invalid suback reason code 0x{code:X2}");
                return null;
            }
        }

        return reader.Ok ? new MqttPacket.SubAck(packetId, codes.ToArray(), properties) : null;
    }

    private static MqttPacket.Unsubscribe? ReadUnsubscribe(ref MqttSpanReader reader, bool v5)
    {
        var packetId = ReadPacketId(ref reader);
        var properties = v5 ? ReadProperties(ref reader, MqttPropertyContext.Unsubscribe) : null;
        var filters = new List<string>();
        while (reader.Ok && reader.Remaining > 0)
        {
            var filter = reader.ReadString();
            if (reader.Ok && !MqttTopic.IsValidFilter(filter))
            {
                reader.Fail("invalid topic filter");
            }

            filters.Add(filter);
        }

        if (reader.Ok && filters.Count == 0)
        {
            reader.Fail("unsubscribe without topic filters");
        }

        return reader.Ok ? new MqttPacket.Unsubscribe(packetId, filters, properties) : null;
    }

    private static MqttPacket.UnsubAck? ReadUnsubAck(ref MqttSpanReader reader, bool v5)
    {
        var packetId = ReadPacketId(ref reader);
        if (!v5)
        {
            return reader.Ok ? new MqttPacket.UnsubAck(packetId, [], null) : null;
        }

        var properties = ReadProperties(ref reader, MqttPropertyContext.UnsubAck);
        var codes = reader.ReadRest();
        if (reader.Ok && codes.IsEmpty)
        {
            reader.Fail("unsuback without reason codes");
        }

        foreach (var code in codes)
        {
            if (code is not (0 or 0x11 or 0x80 or 0x83 or 0x87 or 0x8F or 0x91))
            {
                reader.Fail($"invalid unsuback reason code 0x{code:X2}");
                return null;
            }
        }

        return reader.Ok ? new MqttPacket.UnsubAck(packetId, codes.ToArray(), properties) : null;
    }

    private static MqttPacket.Disconnect? ReadDisconnect(ref MqttSpanReader reader, bool v5)
    {
        byte code = 0;
        MqttProperties? properties = null;
        if (v5 && reader.Remaining > 0)
        {
            code = reader.ReadByte();
            if (reader.Remaining > 0)
            {
                properties = ReadProperties(ref reader, MqttPropertyContext.Disconnect);
            }
        }

        return reader.Ok ? new MqttPacket.Disconnect(code, properties) : null;
    }

    private static MqttPacket.Auth? ReadAuth(ref MqttSpanReader reader)
    {
        byte code = 0;
        MqttProperties? properties = null;
        if (reader.Remaining > 0)
        {
            code = reader.ReadByte();
            if (reader.Remaining > 0)
            {
                properties = ReadProperties(ref reader, MqttPropertyContext.Auth);
            }
        }

        if (reader.Ok && code is not (0 or 0x18 or 0x19))
        {
            reader.Fail($"invalid auth reason code 0x{code:X2}");
        }

        return reader.Ok ? new MqttPacket.Auth(code, properties) : null;
    }

    private static ushort ReadPacketId(ref MqttSpanReader reader)
    {
        var id = reader.ReadUInt16();
        if (reader.Ok && id == 0)
        {
            reader.Fail("packet identifier 0");
        }

        return id;
    }

    private static bool IsValidTopicName(string topic) =>
        topic.Length > 0 && topic.AsSpan().IndexOfAny('+', '#') < 0;

    /// <summary>The contexts each property identifier may appear in (MQTT 5 §2.2.2.2); none for unknown ids.</summary>
    internal static MqttPropertyContext AllowedContexts(uint id) => id switch
    {
        0x01 or 0x02 or 0x03 or 0x08 or 0x09 => MqttPropertyContext.Publish | MqttPropertyContext.Will,
        0x0B => MqttPropertyContext.Publish | MqttPropertyContext.Subscribe,
        0x11 => MqttPropertyContext.Connect | MqttPropertyContext.ConnAck | MqttPropertyContext.Disconnect,
        0x12 or 0x13 or 0x1A or 0x24 or 0x25 or 0x28 or 0x29 or 0x2A => MqttPropertyContext.ConnAck,
        0x15 or 0x16 => MqttPropertyContext.Connect | MqttPropertyContext.ConnAck | MqttPropertyContext.Auth,
        0x17 or 0x19 => MqttPropertyContext.Connect,
        0x18 => MqttPropertyContext.Will,
        0x1C => MqttPropertyContext.ConnAck | MqttPropertyContext.Disconnect,
        0x1F => MqttPropertyContext.ConnAck | MqttPropertyContext.PublishAck | MqttPropertyContext.SubAck
            | MqttPropertyContext.UnsubAck | MqttPropertyContext.Disconnect | MqttPropertyContext.Auth,
        0x21 or 0x22 or 0x27 => MqttPropertyContext.Connect | MqttPropertyContext.ConnAck,
        0x23 => MqttPropertyContext.Publish,
        0x26 => MqttPropertyContext.All,
        _ => MqttPropertyContext.None,
    };

    private static MqttProperties? ReadProperties(ref MqttSpanReader reader, MqttPropertyContext context)
    {
        var length = reader.ReadVarInt();
        if (!reader.Ok)
        {
            return null;
        }

        if (length > reader.Remaining)
        {
            reader.Fail("property length exceeds the packet");
            return null;
        }

        if (length == 0)
        {
            return null;
        }

        var sub = new MqttSpanReader(reader.ReadSpan((int)length));
        var properties = new MqttProperties();
        ulong seen = 0;
        while (sub.Ok && sub.Remaining > 0)
        {
            var id = sub.ReadVarInt();
            if (!sub.Ok)
            {
                break;
            }

            if ((AllowedContexts(id) & context) == MqttPropertyContext.None)
            {
                sub.Fail($"property 0x{id:X2} not allowed in {context}");
                break;
            }

            var repeatable = id == 0x26 || (id == 0x0B && context == MqttPropertyContext.Publish);
            if (!repeatable)
            {
                if ((seen & (1UL << (int)id)) != 0)
                {
                    sub.Fail($"property 0x{id:X2} repeated");
                    break;
                }

                seen |= 1UL << (int)id;
            }

            ReadProperty(ref sub, id, properties);
        }

        if (!sub.Ok)
        {
            reader.Fail(sub.Error!);
            return null;
        }

        return properties;
    }

    private static void ReadProperty(ref MqttSpanReader r, uint id, MqttProperties p)
    {
        switch (id)
        {
            case 0x01: p.PayloadFormatIndicator = ReadFlag(ref r, id); break;
            case 0x02: p.MessageExpiryInterval = r.ReadUInt32(); break;
            case 0x03: p.ContentType = r.ReadString(); break;
            case 0x08:
                p.ResponseTopic = r.ReadString();
                if (r.Ok && !IsValidTopicName(p.ResponseTopic))
                {
                    r.Fail("invalid response topic");
                }

                break;
            case 0x09: p.CorrelationData = r.ReadBinary(); break;
            case 0x0B:
                var subscriptionId = r.ReadVarInt();
                if (r.Ok && subscriptionId == 0)
                {
                    r.Fail("subscription identifier 0");
                }

                (p.SubscriptionIdentifiers ??= []).Add(subscriptionId);
                break;
            case 0x11: p.SessionExpiryInterval = r.ReadUInt32(); break;
            case 0x12: p.AssignedClientIdentifier = r.ReadString(); break;
            case 0x13: p.ServerKeepAlive = r.ReadUInt16(); break;
            case 0x15: p.AuthenticationMethod = r.ReadString(); break;
            case 0x16: p.AuthenticationData = r.ReadBinary(); break;
            case 0x17: p.RequestProblemInformation = ReadFlag(ref r, id); break;
            case 0x18: p.WillDelayInterval = r.ReadUInt32(); break;
            case 0x19: p.RequestResponseInformation = ReadFlag(ref r, id); break;
            case 0x1A: p.ResponseInformation = r.ReadString(); break;
            case 0x1C: p.ServerReference = r.ReadString(); break;
            case 0x1F: p.ReasonString = r.ReadString(); break;
            case 0x21: p.ReceiveMaximum = ReadNonZeroUInt16(ref r, id); break;
            case 0x22: p.TopicAliasMaximum = r.ReadUInt16(); break;
            case 0x23: p.TopicAlias = ReadNonZeroUInt16(ref r, id); break;
            case 0x24: p.MaximumQos = ReadFlag(ref r, id); break;
            case 0x25: p.RetainAvailable = ReadFlag(ref r, id); break;
            case 0x26:
                var name = r.ReadString();
                var value = r.ReadString();
                if (r.Ok)
                {
                    (p.UserProperties ??= []).Add(new MqttUserProperty(name, value));
                }

                break;
            case 0x27:
                var max = r.ReadUInt32();
                if (r.Ok && max == 0)
                {
                    r.Fail("maximum packet size 0");
                }

                p.MaximumPacketSize = max;
                break;
            case 0x28: p.WildcardSubscriptionAvailable = ReadFlag(ref r, id); break;
            case 0x29: p.SubscriptionIdentifierAvailable = ReadFlag(ref r, id); break;
            case 0x2A: p.SharedSubscriptionAvailable = ReadFlag(ref r, id); break;
            default: r.Fail($"unknown property 0x{id:X2}"); break;
        }
    }

    private static byte ReadFlag(ref MqttSpanReader r, uint id)
    {
        var value = r.ReadByte();
        if (r.Ok && value > 1)
        {
            r.Fail($"property 0x{id:X2} must be 0 or 1");
        }

        return value;
    }

    private static ushort ReadNonZeroUInt16(ref MqttSpanReader r, uint id)
    {
        var value = r.ReadUInt16();
        if (r.Ok && value == 0)
        {
            r.Fail($"property 0x{id:X2} must not be 0");
        }

        return value;
    }
}
