using System.Threading.Channels;

namespace Propeller.Application.Changes;

/// <summary>
/// One reader's changes, in commit order, held in a bounded buffer. Appends never wait for a reader: when a slow
/// reader's buffer is full the change is dropped and <see cref="Overflowed"/> says so once, so the reader reloads
/// what it shows instead of trusting a gap (a browser on a slow link must not hold up the command path).
/// </summary>
public sealed class ChangeSubscription : IDisposable
{
    private readonly Channel<ChangeNotice> _channel;
    private readonly Action<ChangeSubscription> _onDispose;
    private int _overflowed;

    public ChangeSubscription(int capacity, Action<ChangeSubscription> onDispose)
    {
        _onDispose = onDispose;
        _channel = Channel.CreateBounded<ChangeNotice>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true },
            _ => Interlocked.Exchange(ref _overflowed, 1));
    }

    /// <summary>The changes; completes when the subscription is disposed.</summary>
    public ChannelReader<ChangeNotice> Reader => _channel.Reader;

    /// <summary>True once after changes were dropped since the last call (the reader should reload).</summary>
    public bool Overflowed() => Interlocked.Exchange(ref _overflowed, 0) == 1;

    /// <summary>Hands a change to the reader, or drops it when the buffer is full.</summary>
    public void Post(ChangeNotice notice) => _channel.Writer.TryWrite(notice);

    public void Dispose()
    {
        _channel.Writer.TryComplete();
        _onDispose(this);
    }
}
