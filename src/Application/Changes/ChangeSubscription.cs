using System.Diagnostics.CodeAnalysis;
using System.Threading.Channels;

namespace Propeller.Application.Changes;

/// <summary>
/// One reader's changes, in commit order, held in a buffer bounded by count and by bytes (each notice's
/// <see cref="ChangeNotice.Bytes"/>). Appends never wait for a reader: when a slow reader's buffer is full, by either,
/// the change is dropped and <see cref="Overflowed"/> says so once, so the reader reloads what it shows instead of
/// trusting a gap (a browser on a slow link must not hold up the command path). The bytes bound is what keeps memory
/// down: notices carry whole states (a task's metadata is up to 1 MiB), and a reader just fast enough not to be cut
/// held its whole count of states the caches had let go (4096 × 1 MiB), with no credentials needed.
/// </summary>
public sealed class ChangeSubscription : IDisposable
{
    /// <summary>The bytes a subscription holds at most by default (see <see cref="ChangeSubscription(int, long, Action{ChangeSubscription})"/>).</summary>
    public const long DefaultByteBudget = 64L * 1024 * 1024;

    private readonly Channel<ChangeNotice> _channel;
    private readonly Action<ChangeSubscription> _onDispose;
    private readonly long _byteBudget;
    private long _bytes;
    private int _overflowed;

    public ChangeSubscription(int capacity, Action<ChangeSubscription> onDispose)
        : this(capacity, DefaultByteBudget, onDispose)
    {
    }

    /// <summary>
    /// A buffer of at most <paramref name="capacity"/> notices and <paramref name="byteBudget"/> bytes of them; a notice
    /// larger than the budget still goes through an empty buffer (so a reader that keeps up sees every change, and what
    /// is held is at most the budget or one notice).
    /// </summary>
    public ChangeSubscription(int capacity, long byteBudget, Action<ChangeSubscription> onDispose)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(byteBudget);
        _onDispose = onDispose;
        _byteBudget = byteBudget;
        _channel = Channel.CreateBounded<ChangeNotice>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true },
            Dropped);
        Reader = new CountingReader(this);
    }

    /// <summary>The changes; completes when the subscription is disposed.</summary>
    public ChannelReader<ChangeNotice> Reader { get; }

    /// <summary>The bytes of the notices posted and not read yet (their <see cref="ChangeNotice.Bytes"/>).</summary>
    public long BufferedBytes => Volatile.Read(ref _bytes);

    /// <summary>True once after changes were dropped since the last call (the reader should reload).</summary>
    public bool Overflowed() => Interlocked.Exchange(ref _overflowed, 0) == 1;

    /// <summary>Hands a change to the reader, or drops it when the buffer is full (by count or by bytes).</summary>
    public void Post(ChangeNotice notice)
    {
        // Counted before it is written, so the reader never takes away bytes not added yet; given back when dropped.
        var bytes = notice.Bytes;
        var buffered = Interlocked.Add(ref _bytes, bytes);
        if (buffered > _byteBudget && buffered != bytes)
        {
            Dropped(notice);
            return;
        }

        if (!_channel.Writer.TryWrite(notice))
        {
            Interlocked.Add(ref _bytes, -bytes); // disposed
        }
    }

    public void Dispose()
    {
        _channel.Writer.TryComplete();
        _onDispose(this);
    }

    /// <summary>A notice dropped, by bytes or by count (the channel's callback, when it is full).</summary>
    private void Dropped(ChangeNotice notice)
    {
        Interlocked.Add(ref _bytes, -notice.Bytes);
        Interlocked.Exchange(ref _overflowed, 1);
    }

    /// <summary>The channel's reader, giving back each notice's bytes as it is read.</summary>
    private sealed class CountingReader(ChangeSubscription owner) : ChannelReader<ChangeNotice>
    {
        private readonly ChannelReader<ChangeNotice> _inner = owner._channel.Reader;

        public override Task Completion => _inner.Completion;

        public override bool CanCount => _inner.CanCount;

        public override int Count => _inner.Count;

        public override bool CanPeek => _inner.CanPeek;

        public override bool TryPeek([MaybeNullWhen(false)] out ChangeNotice item) => _inner.TryPeek(out item);

        public override bool TryRead([MaybeNullWhen(false)] out ChangeNotice item)
        {
            if (!_inner.TryRead(out item))
            {
                return false;
            }

            Interlocked.Add(ref owner._bytes, -item.Bytes);
            return true;
        }

        public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) => _inner.WaitToReadAsync(cancellationToken);
    }
}
