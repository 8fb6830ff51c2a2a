using System.Text;

namespace Propeller.Wasm.Binary;

/// <summary>Reads the primitive encodings of the binary format: LEB128 integers, floats, names and vectors.</summary>
internal sealed class WasmReader(byte[] data, int from, int to)
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    public WasmReader(byte[] bytes)
        : this(bytes, 0, bytes.Length)
    {
    }

    public byte[] Bytes { get; } = data;

    public int Position { get; set; } = from;

    public int End { get; set; } = to;

    public bool AtEnd => Position >= End;

    public int Remaining => End - Position;

    public static ModuleException Malformed(string reason, long offset) =>
        new(ModuleErrorKind.Malformed, reason, offset);

    public static ModuleException Invalid(string reason, long offset) => new(ModuleErrorKind.Invalid, reason, offset);

    public byte ReadByte()
    {
        if (Position >= End)
        {
            throw Malformed(End < Bytes.Length ? "unexpected end of section or function" : "unexpected end", Position);
        }

        return Bytes[Position++];
    }

    public byte PeekByte()
    {
        if (Position >= End)
        {
            throw Malformed("unexpected end", Position);
        }

        return Bytes[Position];
    }

    public uint ReadU32()
    {
        var start = Position;
        uint result = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = ReadByte();
            if (shift == 28)
            {
                if ((b & 0x80) != 0)
                {
                    throw Malformed("integer representation too long", start);
                }

                if ((b & 0x70) != 0)
                {
                    throw Malformed("integer too large", start);
                }
            }

            result |= (uint)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return result;
            }
        }
    }

    public int ReadS32()
    {
        var start = Position;
        int result = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = ReadByte();
            if (shift == 28)
            {
                if ((b & 0x80) != 0)
                {
                    throw Malformed("integer representation too long", start);
                }

                // The unused high bits must all equal the sign bit (bit 3 of the last byte).
                var high = b & 0x78;
                if (high != 0 && high != 0x78)
                {
                    throw Malformed("integer too large", start);
                }

                return result | (b << 28);
            }

            result |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                if (shift < 25 && (b & 0x40) != 0)
                {
                    result |= -1 << (shift + 7);
                }

                return result;
            }
        }
    }

    /// <summary>A signed 33-bit LEB (block type index); returned as long.</summary>
    public long ReadS33()
    {
        var start = Position;
        long result = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = ReadByte();
            if (shift == 28)
            {
                if ((b & 0x80) != 0)
                {
                    throw Malformed("integer representation too long", start);
                }

                var high = b & 0x70;
                if (high != 0 && high != 0x70)
                {
                    throw Malformed("integer too large", start);
                }

                result |= (long)(b & 0x7F) << 28;
                return (result << 29) >> 29;
            }

            result |= (long)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                var bits = shift + 7;
                return (result << (64 - bits)) >> (64 - bits);
            }
        }
    }

    public long ReadS64()
    {
        var start = Position;
        long result = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = ReadByte();
            if (shift == 63)
            {
                if ((b & 0x80) != 0)
                {
                    throw Malformed("integer representation too long", start);
                }

                if (b != 0 && b != 0x7F)
                {
                    throw Malformed("integer too large", start);
                }

                return result | ((long)b << 63);
            }

            result |= (long)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                if (shift < 57 && (b & 0x40) != 0)
                {
                    result |= -1L << (shift + 7);
                }

                return result;
            }
        }
    }

    public int ReadF32Bits()
    {
        var b = ReadBytes(4);
        return BitConverter.ToInt32(b);
    }

    public long ReadF64Bits()
    {
        var b = ReadBytes(8);
        return BitConverter.ToInt64(b);
    }

    public ReadOnlySpan<byte> ReadBytes(int count)
    {
        if (count < 0 || count > End - Position)
        {
            throw Malformed(End < Bytes.Length ? "unexpected end of section or function" : "unexpected end", Position);
        }

        var span = new ReadOnlySpan<byte>(Bytes, Position, count);
        Position += count;
        return span;
    }

    public string ReadName()
    {
        var length = ReadU32();
        if (length > Remaining)
        {
            throw Malformed("length out of bounds", Position);
        }

        var start = Position;
        var bytes = ReadBytes((int)length);
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Malformed("malformed UTF-8 encoding", start);
        }
    }

    /// <summary>Reads a vector length and checks it against the bytes left, so a bad count cannot drive a huge allocation.</summary>
    public int ReadCount(int minItemBytes = 1)
    {
        var start = Position;
        var count = ReadU32();
        if (count > (uint)Remaining / (uint)Math.Max(minItemBytes, 1))
        {
            throw Malformed("unexpected end of section or function", start);
        }

        return (int)count;
    }

    public ValueKind ReadValueKind()
    {
        var start = Position;
        var b = ReadByte();
        return b switch
        {
            0x7F or 0x7E or 0x7D or 0x7C or 0x7B or 0x70 or 0x6F => (ValueKind)b,
            _ => throw Malformed("malformed value type", start),
        };
    }

    public ValueKind ReadRefKind()
    {
        var start = Position;
        var b = ReadByte();
        return b switch
        {
            0x70 or 0x6F => (ValueKind)b,
            _ => throw Malformed("malformed reference type", start),
        };
    }

    public Limits ReadLimits()
    {
        var start = Position;
        var flag = ReadByte();
        if (flag > 1)
        {
            // The flags field is a LEB-encoded integer in the spec's reader, hence its wording.
            throw Malformed((flag & 0x80) != 0 ? "integer representation too long" : "integer too large", start);
        }

        var min = ReadU32();
        uint? max = flag == 1 ? ReadU32() : null;
        return new Limits(min, max);
    }
}
