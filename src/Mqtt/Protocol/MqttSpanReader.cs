using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;

namespace Propeller.Mqtt.Protocol;

/// <summary>Reads MQTT data types from a span. Errors are sticky: after the first one every read returns a default
/// value and <see cref="Error"/> says what went wrong, so decoding never throws and never reads past the packet.</summary>
internal ref struct MqttSpanReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _position;

    public string? Error { get; private set; }

    public readonly bool Ok => Error is null;

    public readonly int Remaining => _data.Length - _position;

    public void Fail(string error)
    {
        Error ??= error;
        _position = _data.Length;
    }

    public byte ReadByte()
    {
        if (_position >= _data.Length)
        {
            Fail("packet truncated");
            return 0;
        }

        return _data[_position++];
    }

    public ushort ReadUInt16()
    {
        if (Remaining < 2)
        {
            Fail("packet truncated");
            return 0;
        }

        var value = BinaryPrimitives.ReadUInt16BigEndian(_data[_position..]);
        _position += 2;
        return value;
    }

    public uint ReadUInt32()
    {
        if (Remaining < 4)
        {
            Fail("packet truncated");
            return 0;
        }

        var value = BinaryPrimitives.ReadUInt32BigEndian(_data[_position..]);
        _position += 4;
        return value;
    }

    /// <summary>A variable byte integer: at most 4 bytes, minimally encoded (MQTT-1.5.5-1).</summary>
    public uint ReadVarInt()
    {
        uint value = 0;
        for (var i = 0; i < 4; i++)
        {
            if (_position >= _data.Length)
            {
                Fail("variable byte integer truncated");
                return 0;
            }

            var b = _data[_position++];
            value |= (uint)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                if (b == 0 && i > 0)
                {
                    Fail("variable byte integer not minimally encoded");
                    return 0;
                }

                return value;
            }
        }

        Fail("variable byte integer longer than 4 bytes");
        return 0;
    }

    public ReadOnlySpan<byte> ReadSpan(int length)
    {
        if (length < 0 || length > Remaining)
        {
            Fail("packet truncated");
            return default;
        }

        var span = _data.Slice(_position, length);
        _position += length;
        return span;
    }

    public ReadOnlySpan<byte> ReadRest() => ReadSpan(Remaining);

    /// <summary>A UTF-8 string: well formed, no U+0000 (MQTT-1.5.4-1, MQTT-1.5.4-2).</summary>
    public string ReadString()
    {
        var length = ReadUInt16();
        var span = ReadSpan(length);
        if (!Ok || span.IsEmpty)
        {
            return string.Empty;
        }

        if (!Utf8.IsValid(span) || span.Contains((byte)0))
        {
            Fail("string is not well-formed UTF-8");
            return string.Empty;
        }

        return Encoding.UTF8.GetString(span);
    }

    public byte[] ReadBinary()
    {
        var length = ReadUInt16();
        var span = ReadSpan(length);
        return Ok ? span.ToArray() : [];
    }
}
