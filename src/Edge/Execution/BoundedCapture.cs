using System.Text;

namespace Propeller.Edge.Execution;

/// <summary>Drains a child's output stream while it runs (the original read only after exit, so a child writing more
/// than a pipe buffer hung, spec §6), keeping the first <c>limit</c> bytes and counting the rest.</summary>
internal sealed class BoundedCapture
{
    private readonly List<byte> _kept = [];
    private readonly int _limit;

    private BoundedCapture(int limit) => _limit = limit;

    public long Total { get; private set; }

    public static (BoundedCapture Capture, Task Drained) Start(Stream stream, int limit)
    {
        var capture = new BoundedCapture(limit);
        return (capture, capture.DrainAsync(stream));
    }

    public override string ToString() => Encoding.UTF8.GetString([.. _kept]);

    private async Task DrainAsync(Stream stream)
    {
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(buffer, CancellationToken.None)) > 0)
        {
            var keep = Math.Min(read, Math.Max(0, _limit - _kept.Count));
            _kept.AddRange(buffer.AsSpan(0, keep));
            Total += read;
        }
    }
}
