using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Propeller.Mqtt.Protocol;

/// <summary>Encodes packets. One instance per writer (it keeps scratch buffers); inputs are validated by the public
/// API before they get here, so an over-long string is a bug and throws.</summary>
internal sealed class MqttPacketEncoder
{
    private readonly ArrayBufferWriter<byte> _body = new(256);
    private readonly ArrayBufferWriter<byte> _properties = new(64);

    public static byte[] EncodeToArray(MqttPacket packet, MqttProtocolVersion version)
    {
        var output = new ArrayBufferWriter<byte>();
        new MqttPacketEncoder().Encode(packet, version, output);
        return output.WrittenSpan.ToArray();
    }

    /// <summary>Writes the whole packet to <paramref name="output"/> and returns its size in bytes.</summary>
    public int Encode(MqttPacket packet, MqttProtocolVersion version, IBufferWriter<byte> output)
    {
        _body.ResetWrittenCount();
        var v5 = version == MqttProtocolVersion.V500;
        ReadOnlySpan<byte> tail = default;
        byte first;
        switch (packet)
        {
            case MqttPacket.Publish p:
                first = (byte)(0x30 | (p.Dup ? 0x08 : 0) | ((int)p.Qos << 1) | (p.Retain ? 0x01 : 0));
                WriteString(_body, p.Topic);
                if (p.Qos != MqttQualityOfService.AtMostOnce)
                {
                    WriteUInt16(_body, p.PacketId);
                }

                if (v5)
                {
                    WriteProperties(p.Properties);
                }

                tail = p.Payload.Span;
                break;
            case MqttPacket.PublishAck a:
                first = (byte)(((int)a.Kind << 4) | (a.Kind == MqttPacketType.PubRel ? 0x02 : 0));
                WriteUInt16(_body, a.PacketId);
                if (v5 && (a.ReasonCode != 0 || a.Properties is not null))
                {
                    WriteByte(_body, a.ReasonCode);
                    if (a.Properties is not null)
                    {
                        WriteProperties(a.Properties);
                    }
                }

                break;
            case MqttPacket.Connect c:
                first = 0x10;
                EncodeConnect(c);
                break;
            case MqttPacket.ConnAck c:
                first = 0x20;
                WriteByte(_body, c.SessionPresent ? (byte)1 : (byte)0);
                WriteByte(_body, c.ReasonCode);
                if (v5)
                {
                    WriteProperties(c.Properties);
                }

                break;
            case MqttPacket.Subscribe s:
                first = 0x82;
                WriteUInt16(_body, s.PacketId);
                if (v5)
                {
                    WriteProperties(s.Properties);
                }

                foreach (var entry in s.Entries)
                {
                    WriteString(_body, entry.Filter);
                    WriteByte(_body, entry.Options);
                }

                break;
            case MqttPacket.SubAck s:
                first = 0x90;
                WriteUInt16(_body, s.PacketId);
                if (v5)
                {
                    WriteProperties(s.Properties);
                }

                _body.Write(s.ReasonCodes);
                break;
            case MqttPacket.Unsubscribe u:
                first = 0xA2;
                WriteUInt16(_body, u.PacketId);
                if (v5)
                {
                    WriteProperties(u.Properties);
                }

                foreach (var filter in u.Filters)
                {
                    WriteString(_body, filter);
                }

                break;
            case MqttPacket.UnsubAck u:
                first = 0xB0;
                WriteUInt16(_body, u.PacketId);
                if (v5)
                {
                    WriteProperties(u.Properties);
                    _body.Write(u.ReasonCodes);
                }

                break;
            case MqttPacket.PingReq:
                first = 0xC0;
                break;
            case MqttPacket.PingResp:
                first = 0xD0;
                break;
            case MqttPacket.Disconnect d:
                first = 0xE0;
                WriteReasonAndProperties(v5, d.ReasonCode, d.Properties);
                break;
            case MqttPacket.Auth a:
                first = 0xF0;
                WriteReasonAndProperties(v5, a.ReasonCode, a.Properties);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(packet), packet.Type, "unknown packet");
        }

        var remaining = _body.WrittenCount + tail.Length;
        var headerLength = 1 + VarIntSize((uint)remaining);
        var header = output.GetSpan(headerLength);
        header[0] = first;
        WriteVarInt(header[1..], (uint)remaining);
        output.Advance(headerLength);
        output.Write(_body.WrittenSpan);
        output.Write(tail);
        return headerLength + remaining;
    }

    private void WriteReasonAndProperties(bool v5, byte reasonCode, MqttProperties? properties)
    {
        if (v5 && (reasonCode != 0 || properties is not null))
        {
            WriteByte(_body, reasonCode);
            if (properties is not null)
            {
                WriteProperties(properties);
            }
        }
    }

    private void EncodeConnect(MqttPacket.Connect c)
    {
        var v5 = c.Version == MqttProtocolVersion.V500;
        WriteString(_body, "MQTT");
        WriteByte(_body, (byte)c.Version);
        var flags = (c.CleanStart ? 0x02 : 0)
            | (c.Will is null ? 0 : 0x04 | ((int)c.Will.Qos << 3) | (c.Will.Retain ? 0x20 : 0))
            | (c.Password is null ? 0 : 0x40)
            | (c.Username is null ? 0 : 0x80);
        WriteByte(_body, (byte)flags);
        WriteUInt16(_body, c.KeepAliveSeconds);
        if (v5)
        {
            WriteProperties(c.Properties);
        }

        WriteString(_body, c.ClientId);
        if (c.Will is not null)
        {
            if (v5)
            {
                WriteProperties(c.Will.Properties);
            }

            WriteString(_body, c.Will.Topic);
            WriteBinary(_body, c.Will.Payload.Span);
        }

        if (c.Username is not null)
        {
            WriteString(_body, c.Username);
        }

        if (c.Password is not null)
        {
            WriteBinary(_body, c.Password);
        }
    }

    private void WriteProperties(MqttProperties? p)
    {
        if (p is null)
        {
            WriteByte(_body, 0);
            return;
        }

        var w = _properties;
        w.ResetWrittenCount();
        WriteByteProperty(w, 0x01, p.PayloadFormatIndicator);
        WriteUInt32Property(w, 0x02, p.MessageExpiryInterval);
        WriteStringProperty(w, 0x03, p.ContentType);
        WriteStringProperty(w, 0x08, p.ResponseTopic);
        if (p.CorrelationData is not null)
        {
            WriteByte(w, 0x09);
            WriteBinary(w, p.CorrelationData);
        }

        if (p.SubscriptionIdentifiers is not null)
        {
            foreach (var id in p.SubscriptionIdentifiers)
            {
                WriteByte(w, 0x0B);
                WriteVarInt(w, id);
            }
        }

        WriteUInt32Property(w, 0x11, p.SessionExpiryInterval);
        WriteStringProperty(w, 0x12, p.AssignedClientIdentifier);
        WriteUInt16Property(w, 0x13, p.ServerKeepAlive);
        WriteStringProperty(w, 0x15, p.AuthenticationMethod);
        if (p.AuthenticationData is not null)
        {
            WriteByte(w, 0x16);
            WriteBinary(w, p.AuthenticationData);
        }

        WriteByteProperty(w, 0x17, p.RequestProblemInformation);
        WriteUInt32Property(w, 0x18, p.WillDelayInterval);
        WriteByteProperty(w, 0x19, p.RequestResponseInformation);
        WriteStringProperty(w, 0x1A, p.ResponseInformation);
        WriteStringProperty(w, 0x1C, p.ServerReference);
        WriteStringProperty(w, 0x1F, p.ReasonString);
        WriteUInt16Property(w, 0x21, p.ReceiveMaximum);
        WriteUInt16Property(w, 0x22, p.TopicAliasMaximum);
        WriteUInt16Property(w, 0x23, p.TopicAlias);
        WriteByteProperty(w, 0x24, p.MaximumQos);
        WriteByteProperty(w, 0x25, p.RetainAvailable);
        if (p.UserProperties is not null)
        {
            foreach (var (name, value) in p.UserProperties)
            {
                WriteByte(w, 0x26);
                WriteString(w, name);
                WriteString(w, value);
            }
        }

        WriteUInt32Property(w, 0x27, p.MaximumPacketSize);
        WriteByteProperty(w, 0x28, p.WildcardSubscriptionAvailable);
        WriteByteProperty(w, 0x29, p.SubscriptionIdentifierAvailable);
        WriteByteProperty(w, 0x2A, p.SharedSubscriptionAvailable);

        WriteVarInt(_body, (uint)w.WrittenCount);
        _body.Write(w.WrittenSpan);
    }

    private static void WriteByteProperty(ArrayBufferWriter<byte> w, byte id, byte? value)
    {
        if (value is { } v)
        {
            WriteByte(w, id);
            WriteByte(w, v);
        }
    }

    private static void WriteUInt16Property(ArrayBufferWriter<byte> w, byte id, ushort? value)
    {
        if (value is { } v)
        {
            WriteByte(w, id);
            WriteUInt16(w, v);
        }
    }

    private static void WriteUInt32Property(ArrayBufferWriter<byte> w, byte id, uint? value)
    {
        if (value is { } v)
        {
            WriteByte(w, id);
            var span = w.GetSpan(4);
            BinaryPrimitives.WriteUInt32BigEndian(span, v);
            w.Advance(4);
        }
    }

    private static void WriteStringProperty(ArrayBufferWriter<byte> w, byte id, string? value)
    {
        if (value is not null)
        {
            WriteByte(w, id);
            WriteString(w, value);
        }
    }

    private static void WriteByte(ArrayBufferWriter<byte> w, byte value)
    {
        w.GetSpan(1)[0] = value;
        w.Advance(1);
    }

    private static void WriteUInt16(ArrayBufferWriter<byte> w, ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(w.GetSpan(2), value);
        w.Advance(2);
    }

    private static void WriteString(ArrayBufferWriter<byte> w, string value)
    {
        var max = Encoding.UTF8.GetMaxByteCount(value.Length);
        var span = w.GetSpan(2 + max);
        var length = Encoding.UTF8.GetBytes(value, span[2..]);
        if (length > ushort.MaxValue)
        {
            throw new ArgumentException("MQTT strings are limited to 65,535 UTF-8 bytes.", nameof(value));
        }

        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)length);
        w.Advance(2 + length);
    }

    private static void WriteBinary(ArrayBufferWriter<byte> w, ReadOnlySpan<byte> value)
    {
        if (value.Length > ushort.MaxValue)
        {
            throw new ArgumentException("MQTT binary data is limited to 65,535 bytes.", nameof(value));
        }

        WriteUInt16(w, (ushort)value.Length);
        w.Write(value);
    }

    private static void WriteVarInt(ArrayBufferWriter<byte> w, uint value)
    {
        var size = VarIntSize(value);
        WriteVarInt(w.GetSpan(size), value);
        w.Advance(size);
    }

    public static int VarIntSize(uint value) => value switch
    {
        < 128 => 1,
        < 16_384 => 2,
        < 2_097_152 => 3,
        < 268_435_456 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(value), value, "exceeds the MQTT variable byte integer range"),
    };

    private static void WriteVarInt(Span<byte> span, uint value)
    {
        var i = 0;
        do
        {
            var b = (byte)(value & 0x7F);
            value >>= 7;
            if (value > 0)
            {
                b |= 0x80;
            }

            span[i++] = b;
        }
        while (value > 0);
    }
}
