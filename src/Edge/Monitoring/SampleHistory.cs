using Propeller.Contracts.Mqtt;

namespace Propeller.Edge.Monitoring;

/// <summary>
/// The retained samples of one task's monitor and their aggregates (spec §1.7: over at most <c>history_size</c>
/// samples, up to 100,000). A ring (<see cref="Queue{T}"/>) with running sums and monotonic queues for the two maxima,
/// so adding a sample and aggregating are O(1) amortised: the list it replaces shifted every sample on each
/// <c>RemoveAt(0)</c> and scanned them all for the aggregates, every interval of every task.
/// </summary>
internal sealed class SampleHistory(int capacity)
{
    private readonly Queue<ProcessMetrics> _samples = new();
    private readonly LinkedList<(long Index, double Value)> _cpuMax = new();
    private readonly LinkedList<(long Index, ulong Value)> _memoryMax = new();
    private ProcessMetrics? _last;
    private long _added;
    private long _evicted;
    private double _cpuSum;
    private double _memorySum;

    public int Count => _samples.Count;

    public void Add(ProcessMetrics sample)
    {
        if (capacity <= 0)
        {
            return;
        }

        var index = _added++;
        _samples.Enqueue(sample);
        _last = sample;
        _cpuSum += sample.CpuPercent;
        _memorySum += sample.MemoryBytes;
        Push(_cpuMax, index, sample.CpuPercent);
        Push(_memoryMax, index, sample.MemoryBytes);
        if (_samples.Count > capacity)
        {
            var gone = _samples.Dequeue();
            _cpuSum -= gone.CpuPercent;
            _memorySum -= gone.MemoryBytes;
            var oldest = index - capacity + 1;
            Trim(_cpuMax, oldest);
            Trim(_memoryMax, oldest);

            // Subtracting what leaves lets rounding build up over a long run; summing afresh once per full turn of
            // the ring keeps the error at one turn's worth and the cost O(1) amortised.
            if (++_evicted % capacity == 0)
            {
                _cpuSum = _samples.Sum(s => s.CpuPercent);
                _memorySum = _samples.Sum(s => (double)s.MemoryBytes);
            }
        }
    }

    /// <summary>The aggregates over the retained samples; null when none are.</summary>
    public AggregatedMetrics? Aggregate()
    {
        if (_samples.Count == 0 || _last is null)
        {
            return null;
        }

        var first = _samples.Peek();
        return new AggregatedMetrics(
            Math.Max(0, _cpuSum / _samples.Count),
            _cpuMax.First!.Value.Value,
            (ulong)Math.Max(0, _memorySum / _samples.Count),
            _memoryMax.First!.Value.Value,
            _last.DiskReadBytes - Math.Min(_last.DiskReadBytes, first.DiskReadBytes),
            _last.DiskWriteBytes - Math.Min(_last.DiskWriteBytes, first.DiskWriteBytes),
            _samples.Count);
    }

    /// <summary>Keeps the queue decreasing from first to last: a value that a later, larger one outlives can never be
    /// the maximum again.</summary>
    private static void Push<T>(LinkedList<(long Index, T Value)> queue, long index, T value)
        where T : IComparable<T>
    {
        while (queue.Last is { } last && last.Value.Value.CompareTo(value) <= 0)
        {
            queue.RemoveLast();
        }

        queue.AddLast((index, value));
    }

    private static void Trim<T>(LinkedList<(long Index, T Value)> queue, long oldest)
    {
        while (queue.First is { } first && first.Value.Index < oldest)
        {
            queue.RemoveFirst();
        }
    }
}
