using System.Text;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// A plugin's stdout or stderr: keeps up to <c>capacity</c> bytes between drains (the rest is counted and dropped) and
/// hands them back as lines, so the host can log them with the plugin's name (spec §7.1).
/// </summary>
internal sealed class PluginOutput(int capacity) : Stream
{
    private readonly MemoryStream _bytes = new();
    private readonly Lock _lock = new();
    private long _dropped;

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException("PluginOutput is write-only.");

    public override long Position
    {
        get => throw new NotSupportedException("PluginOutput is write-only.");
        set => throw new NotSupportedException("PluginOutput is write-only.");
    }

    /// <summary>The complete lines written since the last drain, plus a trailing partial line; resets the buffer.</summary>
    public List<string> Drain(out long dropped)
    {
        lock (_lock)
        {
            dropped = _dropped;
            _dropped = 0;
            if (_bytes.Length == 0)
            {
                return [];
            }

            var text = Encoding.UTF8.GetString(_bytes.GetBuffer(), 0, (int)_bytes.Length);
            _bytes.SetLength(0);
            var lines = text.Split('\n');
            var count = lines[^1].Length == 0 ? lines.Length - 1 : lines.Length;
            return [.. lines.Take(count).Select(l => l.TrimEnd('\r'))];
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        lock (_lock)
        {
            var room = capacity - (int)_bytes.Length;
            var kept = Math.Clamp(room, 0, buffer.Length);
            _bytes.Write(buffer[..kept]);
            _dropped += buffer.Length - kept;
        }
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("PluginOutput is write-only.");

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("PluginOutput is write-only.");

    public override void SetLength(long value) => throw new NotSupportedException("PluginOutput is write-only.");
}
