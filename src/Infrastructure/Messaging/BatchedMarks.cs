using System.Threading.Channels;

namespace Propeller.Infrastructure.Messaging;

/// <summary>
/// Bookkeeping writes that may lag a little (inbox rows handled, outbox rows sent), gathered into one statement: the
/// first key waits <c>linger</c> for company, then everything queued (up to <c>maxBatch</c>) goes to
/// <c>write</c> in one call. A key written late or lost to a crash only means that message is seen again (the
/// inbox and the outbox are at-least-once), so the lag is safe. <see cref="DisposeAsync"/> writes what is queued.
/// </summary>
/// <typeparam name="TKey">What identifies a row.</typeparam>
internal sealed class BatchedMarks<TKey> : IAsyncDisposable
{
    private readonly Channel<TKey> _keys = Channel.CreateUnbounded<TKey>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Func<TKey[], Task> _write;
    private readonly Action<Exception> _failed;
    private readonly TimeSpan _linger;
    private readonly int _maxBatch;
    private readonly Task _loop;

    /// <param name="write">Writes one batch (one statement).</param>
    /// <param name="failed">Reports a batch that could not be written (it is dropped: the rows are seen again later).</param>
    /// <param name="linger">How long the first key of a batch waits for others.</param>
    /// <param name="maxBatch">The most keys in one write.</param>
    public BatchedMarks(Func<TKey[], Task> write, Action<Exception> failed, TimeSpan linger, int maxBatch = 1000)
    {
        _write = write;
        _failed = failed;
        _linger = linger;
        _maxBatch = maxBatch;
        _loop = Task.Run(LoopAsync, CancellationToken.None);
    }

    public void Add(TKey key) => _keys.Writer.TryWrite(key);

    public async ValueTask DisposeAsync()
    {
        _keys.Writer.TryComplete();
        await _loop.ConfigureAwait(false);
    }

    private async Task LoopAsync()
    {
        var batch = new List<TKey>();
        while (await _keys.Reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            if (_linger > TimeSpan.Zero && !_keys.Reader.Completion.IsCompleted)
            {
                await Task.Delay(_linger).ConfigureAwait(false);
            }

            while (_keys.Reader.TryRead(out var key))
            {
                batch.Add(key);
                if (batch.Count == _maxBatch || !_keys.Reader.TryPeek(out _))
                {
                    await WriteAsync(batch).ConfigureAwait(false);
                }
            }
        }
    }

    private async Task WriteAsync(List<TKey> batch)
    {
        try
        {
            await _write([.. batch]).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // A failed bookkeeping write is reported and dropped; the loop must go on.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            _failed(ex);
        }

        batch.Clear();
    }
}
