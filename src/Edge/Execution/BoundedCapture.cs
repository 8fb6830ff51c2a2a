using System.Text;

namespace Propeller.Edge.Execution;

/// <summary>
/// A task's stdout or stderr: keeps the first <c>limit</c> bytes and counts the rest. Fed by an external runtime's
/// pipe while the child runs (the original read only after exit, so a child writing more than a pipe buffer hung,
/// spec §6) or by Wasmtime's WASI output callback.
/// </summary>
internal sealed class BoundedCapture(int limit)
{
    private readonly List<byte> _kept = [];
    private readonly Lock _lock = new();
    private long _total;

    public long Total
    {
        get
        {
            lock (_lock)
            {
                return _total;
            }
        }
    }

    public bool Truncated => Total > limit;

    public static (BoundedCapture Capture, Task Drained) Start(Stream stream, int limit)
    {
        var capture = new BoundedCapture(limit);
        return (capture, capture.DrainAsync(stream));
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            var keep = Math.Min(data.Length, Math.Max(0, limit - _kept.Count));
            _kept.AddRange(data[..keep]);
            _total += data.Length;
        }
    }

    public override string ToString()
    {
        lock (_lock)
        {
            return Encoding.UTF8.GetString([.. _kept]);
        }
    }

    private async Task DrainAsync(Stream stream)
    {
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(buffer, CancellationToken.None)) > 0)
        {
            Append(buffer.AsSpan(0, read));
        }
    }
}
