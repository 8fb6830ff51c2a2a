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

    /// <summary>The kept bytes as text; when the output was cut, without the character the cut split (a partial UTF-8
    /// sequence would decode to U+FFFD).</summary>
    public override string ToString()
    {
        lock (_lock)
        {
            var kept = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_kept);
            return Encoding.UTF8.GetString(_total > limit ? kept[..WholeCharacters(kept)] : kept);
        }
    }

    /// <summary>The length of <paramref name="bytes"/> without a UTF-8 sequence its end cuts short.</summary>
    internal static int WholeCharacters(ReadOnlySpan<byte> bytes)
    {
        for (var back = 1; back <= Math.Min(4, bytes.Length); back++)
        {
            var b = bytes[^back];
            if ((b & 0xC0) == 0x80)
            {
                continue; // a continuation byte: its lead is further back
            }

            var length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
            return length > back ? bytes.Length - back : bytes.Length;
        }

        return bytes.Length;
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
