using System.Buffers;
using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt.Tests;

public sealed class CodecTests
{
    private const int Max = 1024 * 1024;

    public static TheoryData<MqttProtocolVersion, int> AllSamples()
    {
        var data = new TheoryData<MqttProtocolVersion, int>();
        foreach (var version in new[] { MqttProtocolVersion.V311, MqttProtocolVersion.V500 })
        {
            for (var i = 0; i < PacketSamples.Fixed(version).Count(); i++)
            {
                data.Add(version, i);
            }
        }

        return data;
    }

    internal static (MqttDecodeStatus Status, MqttPacket? Packet, string? Error, long Consumed) Decode(byte[] bytes, MqttProtocolVersion version, int max = Max)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        var status = MqttPacketDecoder.TryDecode(ref buffer, version, max, out var packet, out var error);
        return (status, packet, error, bytes.Length - buffer.Length);
    }

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void GivenValidPacket_WhenEncodedAndDecoded_ThenReEncodingGivesTheSameBytes(MqttProtocolVersion version, int index)
    {
        var packet = PacketSamples.Fixed(version).ElementAt(index);
        var bytes = MqttPacketEncoder.EncodeToArray(packet, version);

        var (status, decoded, error, consumed) = Decode(bytes, version);

        error.ShouldBeNull();
        status.ShouldBe(MqttDecodeStatus.Packet);
        consumed.ShouldBe(bytes.Length);
        decoded!.Type.ShouldBe(packet.Type);
        MqttPacketEncoder.EncodeToArray(decoded, version).ShouldBe(bytes);
    }

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void GivenAnyStrictPrefixOfAPacket_WhenDecoding_ThenItAsksForMoreData(MqttProtocolVersion version, int index)
    {
        var bytes = MqttPacketEncoder.EncodeToArray(PacketSamples.Fixed(version).ElementAt(index), version);
        for (var length = 0; length < bytes.Length; length++)
        {
            Decode(bytes[..length], version).Status.ShouldBe(MqttDecodeStatus.NeedMoreData);
        }
    }

    [Fact]
    public void GivenPacketSplitAcrossSegments_WhenDecoding_ThenItDecodes()
    {
        var bytes = MqttPacketEncoder.EncodeToArray(PacketSamples.Fixed(MqttProtocolVersion.V500).ElementAt(4), MqttProtocolVersion.V500);
        var first = new Segment(bytes.AsMemory(0, 7));
        var last = first.Append(bytes.AsMemory(7));
        var buffer = new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
        MqttPacketDecoder.TryDecode(ref buffer, MqttProtocolVersion.V500, Max, out var packet, out _).ShouldBe(MqttDecodeStatus.Packet);
        packet.ShouldBeOfType<MqttPacket.Publish>().Payload.Length.ShouldBe(300);
    }

    [Fact]
    public void GivenTwoPacketsInOneBuffer_WhenDecoding_ThenBothComeOutInOrder()
    {
        var one = MqttPacketEncoder.EncodeToArray(new MqttPacket.PublishAck(MqttPacketType.PubAck, 1, 0, null), MqttProtocolVersion.V311);
        var two = MqttPacketEncoder.EncodeToArray(MqttPacket.PingResp.Instance, MqttProtocolVersion.V311);
        var buffer = new ReadOnlySequence<byte>([.. one, .. two]);
        MqttPacketDecoder.TryDecode(ref buffer, MqttProtocolVersion.V311, Max, out var first, out _).ShouldBe(MqttDecodeStatus.Packet);
        MqttPacketDecoder.TryDecode(ref buffer, MqttProtocolVersion.V311, Max, out var second, out _).ShouldBe(MqttDecodeStatus.Packet);
        first.ShouldBeOfType<MqttPacket.PublishAck>().PacketId.ShouldBe((ushort)1);
        second.ShouldBeOfType<MqttPacket.PingResp>();
        buffer.Length.ShouldBe(0);
    }

    [Theory]
    [InlineData(new byte[] { 0x30, 0x80, 0x80, 0x80, 0x80, 0x01 }, "longer than 4 bytes")]
    [InlineData(new byte[] { 0x30, 0x80, 0x00 }, "not minimally encoded")]
    [InlineData(new byte[] { 0xD0, 0xFF, 0xFF, 0xFF, 0x7F }, "exceeds the maximum packet size")]
    [InlineData(new byte[] { 0x00, 0x00 }, "invalid packet type")]
    [InlineData(new byte[] { 0xF0, 0x00 }, "invalid packet type")]
    [InlineData(new byte[] { 0xC1, 0x00 }, "invalid fixed header flags")]
    [InlineData(new byte[] { 0x60, 0x02, 0x00, 0x01 }, "invalid fixed header flags")]
    [InlineData(new byte[] { 0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01 }, "invalid publish flags")]
    [InlineData(new byte[] { 0x38, 0x03, 0x00, 0x01, 0x61 }, "invalid publish flags")]
    [InlineData(new byte[] { 0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00 }, "packet identifier 0")]
    [InlineData(new byte[] { 0x30, 0x03, 0x00, 0x01, 0x23 }, "invalid publish topic")]
    [InlineData(new byte[] { 0x30, 0x03, 0x00, 0x01, 0x00 }, "not well-formed UTF-8")]
    [InlineData(new byte[] { 0x30, 0x04, 0x00, 0x02, 0xC3, 0x28 }, "not well-formed UTF-8")]
    [InlineData(new byte[] { 0x30, 0x04, 0x00, 0x07, 0x61, 0x62 }, "truncated")]
    [InlineData(new byte[] { 0x40, 0x03, 0x00, 0x01, 0x00 }, "trailing bytes")]
    [InlineData(new byte[] { 0x20, 0x02, 0x02, 0x00 }, "invalid connack flags")]
    [InlineData(new byte[] { 0x90, 0x03, 0x00, 0x01, 0x03 }, "invalid suback reason code")]
    [InlineData(new byte[] { 0x82, 0x02, 0x00, 0x01 }, "without topic filters")]
    [InlineData(new byte[] { 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x03 }, "invalid subscription")]
    [InlineData(new byte[] { 0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 0x61, 0x23, 0x00 }, "invalid subscription")]
    [InlineData(new byte[] { 0xE0, 0x01, 0x00 }, "trailing bytes")]
    public void GivenMalformedMqtt311Packet_WhenDecoding_ThenItIsRejectedWithAReason(byte[] bytes, string reason)
    {
        var (status, packet, error, _) = Decode(bytes, MqttProtocolVersion.V311, max: 1000);
        status.ShouldBe(MqttDecodeStatus.Malformed);
        packet.ShouldBeNull();
        error.ShouldNotBeNull().ShouldContain(reason);
    }

    [Theory]
    [InlineData(new byte[] { 0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x21, 0x00, 0x01 }, "not allowed")]
    [InlineData(new byte[] { 0x30, 0x0A, 0x00, 0x01, 0x61, 0x06, 0x02, 0, 0, 0, 1, 0x03 }, "truncated")]
    [InlineData(new byte[] { 0x30, 0x0E, 0x00, 0x01, 0x61, 0x0A, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1 }, "repeated")]
    [InlineData(new byte[] { 0x30, 0x06, 0x00, 0x01, 0x61, 0x02, 0x01, 0x02 }, "must be 0 or 1")]
    [InlineData(new byte[] { 0x30, 0x07, 0x00, 0x01, 0x61, 0x03, 0x23, 0x00, 0x00 }, "must not be 0")]
    [InlineData(new byte[] { 0x30, 0x04, 0x00, 0x00, 0x00, 0x00 }, "invalid publish topic")]
    [InlineData(new byte[] { 0x30, 0x05, 0x00, 0x01, 0x61, 0x7F, 0x00 }, "property length exceeds")]
    [InlineData(new byte[] { 0x30, 0x06, 0x00, 0x01, 0x61, 0x02, 0x7F, 0x00 }, "not allowed")]
    [InlineData(new byte[] { 0x30, 0x06, 0x00, 0x01, 0x61, 0x02, 0x0B, 0x00 }, "subscription identifier 0")]
    [InlineData(new byte[] { 0xF0, 0x01, 0x01 }, "invalid auth reason code")]
    [InlineData(new byte[] { 0xB0, 0x03, 0x00, 0x01, 0x00 }, "without reason codes")]
    public void GivenMalformedMqtt5Packet_WhenDecoding_ThenItIsRejectedWithAReason(byte[] bytes, string reason)
    {
        var (status, _, error, _) = Decode(bytes, MqttProtocolVersion.V500, max: 1000);
        status.ShouldBe(MqttDecodeStatus.Malformed);
        error.ShouldNotBeNull().ShouldContain(reason);
    }

    [Fact]
    public void GivenHeaderClaimingAHugePacket_WhenOnlyTheHeaderArrived_ThenItIsRejectedWithoutWaitingOrAllocating()
    {
        byte[] header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
        var before = GC.GetAllocatedBytesForCurrentThread();
        var (status, _, error, _) = Decode(header, MqttProtocolVersion.V311, max: 64 * 1024);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        status.ShouldBe(MqttDecodeStatus.Malformed);
        error.ShouldNotBeNull().ShouldContain("268435460 bytes exceeds");
        allocated.ShouldBeLessThan(4096);
    }

    [Fact]
    public void GivenStringLengthLargerThanThePacket_WhenDecoding_ThenItIsMalformedWithoutAllocatingIt()
    {
        byte[] bytes = [0x30, 0x04, 0xFF, 0xFF, 0x61, 0x62];
        var before = GC.GetAllocatedBytesForCurrentThread();
        var (status, _, _, _) = Decode(bytes, MqttProtocolVersion.V311);
        (GC.GetAllocatedBytesForCurrentThread() - before).ShouldBeLessThan(4096);
        status.ShouldBe(MqttDecodeStatus.Malformed);
    }

    [Fact]
    public void GivenMaximumRemainingLength_WhenEncodingTheHeader_ThenTheVarIntRoundTrips()
    {
        MqttPacketEncoder.VarIntSize(127).ShouldBe(1);
        MqttPacketEncoder.VarIntSize(128).ShouldBe(2);
        MqttPacketEncoder.VarIntSize(16_383).ShouldBe(2);
        MqttPacketEncoder.VarIntSize(16_384).ShouldBe(3);
        MqttPacketEncoder.VarIntSize(268_435_455).ShouldBe(4);
        Should.Throw<ArgumentOutOfRangeException>(() => MqttPacketEncoder.VarIntSize(268_435_456));
        var big = new MqttPacket.Publish("t", new byte[20_000], MqttQualityOfService.AtMostOnce, false, false, 0, null);
        var bytes = MqttPacketEncoder.EncodeToArray(big, MqttProtocolVersion.V311);
        bytes[1..4].ShouldBe(new byte[] { 0xA3, 0x9C, 0x01 });
        Decode(bytes, MqttProtocolVersion.V311).Status.ShouldBe(MqttDecodeStatus.Packet);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
