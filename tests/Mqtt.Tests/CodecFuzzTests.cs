using System.Buffers;
using System.Diagnostics;
using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt.Tests;

/// <summary>Deterministic (seeded) fuzzing of the decoder: random bytes and mutated valid packets. No input may throw,
/// hang, or make the decoder allocate more than a small multiple of the bytes it was given.</summary>
public sealed class CodecFuzzTests
{
    private const int Cases = 1_000_000;
    private const int MaxPacketSize = 4096;

    [Fact]
    public void GivenAMillionRandomAndMutatedInputs_WhenDecoding_ThenNothingThrowsHangsOrOverAllocates()
    {
        var random = new Random(20261122);
        var corpus = new List<(byte[] Bytes, MqttProtocolVersion Version)>();
        foreach (var version in new[] { MqttProtocolVersion.V311, MqttProtocolVersion.V500 })
        {
            corpus.AddRange(PacketSamples.Fixed(version).Select(p => (MqttPacketEncoder.EncodeToArray(p, version), version)));
            for (var i = 0; i < 500; i++)
            {
                corpus.Add((MqttPacketEncoder.EncodeToArray(PacketSamples.Random(random, version), version), version));
            }
        }

        var scratch = new byte[MaxPacketSize + 16];
        var counts = new int[3];
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < Cases; i++)
        {
            int length;
            MqttProtocolVersion version;
            if (i % 4 == 0)
            {
                version = (i & 4) == 0 ? MqttProtocolVersion.V311 : MqttProtocolVersion.V500;
                length = random.Next(0, 64);
                random.NextBytes(scratch.AsSpan(0, length));
                if (length > 0)
                {
                    // Bias the first byte towards real packet types so bodies get exercised, not just the header check.
                    scratch[0] = (byte)((random.Next(16) << 4) | (random.Next(8) == 0 ? random.Next(16) : 0));
                }
            }
            else
            {
                var (bytes, v) = corpus[random.Next(corpus.Count)];
                version = v;
                length = Math.Min(bytes.Length, MaxPacketSize);
                bytes.AsSpan(0, length).CopyTo(scratch);
                Mutate(random, scratch, ref length);
            }

            var input = scratch.AsMemory(0, length);
            var (status, allocated) = DecodeAll(input, version);
            counts[(int)status]++;
            var bound = (32L * length) + 1024;
            if (allocated > bound)
            {
                // The first decode down a rare path may fill a runtime cache once (type initializers, enum names, format
                // strings); allocation that depends on the input shows up again when the same input is decoded again.
                var (_, again) = DecodeAll(input, version);
                if (again > bound)
                {
                    Assert.Fail($"case {i}: {again} bytes allocated for a {length}-byte input");
                }
            }
        }

        stopwatch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(60));
        TestContext.Current.SendDiagnosticMessage(
            $"fuzz: {Cases} cases in {stopwatch.Elapsed.TotalSeconds:F1}s; packet {counts[1]}, malformed {counts[2]}, need more {counts[0]}");
        counts[(int)MqttDecodeStatus.Packet].ShouldBeGreaterThan(Cases / 20);
        counts[(int)MqttDecodeStatus.Malformed].ShouldBeGreaterThan(Cases / 20);
    }

    /// <summary>Decodes packets until the input is used up or rejected; each iteration must make progress. Returns
    /// the last status and the bytes the decoder allocated (measured around the decoder calls only).</summary>
    private static (MqttDecodeStatus Status, long Allocated) DecodeAll(ReadOnlyMemory<byte> input, MqttProtocolVersion version)
    {
        var buffer = new ReadOnlySequence<byte>(input);
        long allocated = 0;
        for (var guard = 0; guard <= input.Length; guard++)
        {
            var before = buffer.Length;
            var start = GC.GetAllocatedBytesForCurrentThread();
            var status = MqttPacketDecoder.TryDecode(ref buffer, version, MaxPacketSize, out var packet, out var error);
            allocated += GC.GetAllocatedBytesForCurrentThread() - start;
            switch (status)
            {
                case MqttDecodeStatus.Packet when packet is not null && buffer.Length < before:
                    if (buffer.Length == 0)
                    {
                        return (status, allocated);
                    }

                    break;
                case MqttDecodeStatus.Malformed when !string.IsNullOrEmpty(error):
                    return (status, allocated);
                case MqttDecodeStatus.NeedMoreData when buffer.Length == before:
                    return (status, allocated);
                default:
                    throw new InvalidOperationException($"inconsistent decoder result {status}");
            }
        }

        throw new InvalidOperationException("decoder made no progress");
    }

    private static void Mutate(Random random, byte[] data, ref int length)
    {
        var mutations = random.Next(1, 4);
        for (var m = 0; m < mutations; m++)
        {
            switch (random.Next(7))
            {
                case 0 when length > 0:
                    data[random.Next(length)] ^= (byte)(1 << random.Next(8));
                    break;
                case 1 when length > 0:
                    data[random.Next(length)] = (byte)random.Next(256);
                    break;
                case 2 when length > 1:
                    length = random.Next(1, length);
                    break;
                case 3 when length + 8 < data.Length:
                    var extra = random.Next(1, 8);
                    random.NextBytes(data.AsSpan(length, extra));
                    length += extra;
                    break;
                case 4 when length > 1:
                    // Corrupt the remaining length.
                    data[1] = (byte)random.Next(256);
                    break;
                case 5 when length > 6:
                    // Corrupt a length prefix inside the body (strings, properties).
                    var at = random.Next(2, length - 1);
                    data[at] = 0xFF;
                    data[at + 1] = (byte)random.Next(256);
                    break;
                default:
                    if (length > 0)
                    {
                        data[random.Next(length)] = 0;
                    }

                    break;
            }
        }
    }
}
