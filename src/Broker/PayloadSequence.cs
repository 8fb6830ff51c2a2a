using System.Buffers;

namespace Propeller.Broker;

/// <summary>A payload made of several buffers, as one <see cref="ReadOnlySequence{T}"/> without copying them (for
/// <see cref="BrokerConnection.PublishAsync(string, ReadOnlySequence{byte}, MQTTnet.Protocol.MqttQualityOfServiceLevel, CancellationToken)"/>).</summary>
public static class PayloadSequence
{
    public static ReadOnlySequence<byte> Of(params ReadOnlySpan<ReadOnlyMemory<byte>> parts)
    {
        if (parts.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(parts[0], 0);
        var last = first;
        foreach (var part in parts[1..])
        {
            var next = new Segment(part, last.RunningIndex + last.Memory.Length);
            last.Link(next);
            last = next;
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public void Link(Segment next) => Next = next;
    }
}
