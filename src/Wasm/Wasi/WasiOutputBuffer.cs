using System.Text;

namespace Propeller.Wasm.Wasi;

/// <summary>
/// A write-only stream that keeps the first <see cref="Capacity"/> bytes written and counts the rest, so a guest that
/// prints without end cannot exhaust the host. The guest is always told its writes succeeded.
/// </summary>
public sealed class WasiOutputBuffer(int capacity) : Stream
{
    private readonly MemoryStream _bytes = new();
    private readonly Lock _lock = new();

    public int Capacity { get; } = capacity >= 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity));

    /// <summary>Total bytes the guest wrote, kept or not.</summary>
    public long TotalWritten { get; private set; }

    public bool Truncated => TotalWritten > Capacity;

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => _bytes.Length;

    public override long Position
    {
        get => _bytes.Length;
        set => throw new NotSupportedException("WasiOutputBuffer is a write-only, non-seekable stream (CanRead and CanSeek are false).");
    }

    public byte[] ToArray()
    {
        lock (_lock)
        {
            return _bytes.ToArray();
        }
    }

    public override string ToString() => Encoding.UTF8.GetString(ToArray());

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        lock (_lock)
        {
            TotalWritten += buffer.Length;
            var room = Capacity - (int)_bytes.Length;
            if (room > 0)
            {
                _bytes.Write(buffer[..Math.Min(room, buffer.Length)]);
            }
        }
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("WasiOutputBuffer is a write-only, non-seekable stream (CanRead and CanSeek are false).");

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("WasiOutputBuffer is a write-only, non-seekable stream (CanRead and CanSeek are false).");

    public override void SetLength(long value) => throw new NotSupportedException("WasiOutputBuffer is a write-only, non-seekable stream (CanRead and CanSeek are false).");
}
