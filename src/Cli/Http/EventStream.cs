using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;

namespace Propeller.Cli.Http;

/// <summary>
/// An answer of <c>GET /events</c> whose headers have arrived (the manager subscribes before it sends them, so nothing
/// committed from then on is missed): its events until the stream ends or breaks (the connection lost: the caller goes
/// on another way), or one is over <see cref="MaxEventBytes"/>.
/// </summary>
internal sealed class EventStream(HttpRequestMessage request, HttpResponseMessage response, Stream body, string tooLarge) : IAsyncDisposable
{
    /// <summary>
    /// The most read for one event: the parser keeps a line, and an event's data, until it ends, so a stream that never
    /// ends a line (something else at the URL) took memory until it ran out. The manager's events are a task's JSON
    /// (modules redacted, metadata at most 1 MiB): far below.
    /// </summary>
    public const int MaxEventBytes = 16 * 1024 * 1024;

    public async IAsyncEnumerable<SseItem<string>> ReadAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var capped = new CappedStream(body, tooLarge);
        await using var events = SseParser.Create(capped).EnumerateAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            try
            {
                if (!await events.MoveNextAsync())
                {
                    break;
                }
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException && !cancellationToken.IsCancellationRequested)
            {
                break; // cut (the manager stopped, a proxy timed out): like an end
            }

            capped.SinceEvent = 0;
            yield return events.Current;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await body.DisposeAsync();
        response.Dispose();
        request.Dispose();
    }

    /// <summary>Counts what is read since the last event, and refuses to read past <see cref="MaxEventBytes"/>.</summary>
    private sealed class CappedStream(Stream inner, string tooLarge) : Stream
    {
        public long SinceEvent { get; set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Counted(await inner.ReadAsync(buffer[..Allowed(buffer.Length)], cancellationToken));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => Counted(inner.Read(buffer, offset, Allowed(count)));

        /// <summary>How much of <paramref name="wanted"/> may be read before the cap; throws once it is reached.</summary>
        private int Allowed(int wanted) =>
            SinceEvent < MaxEventBytes ? (int)Math.Min(wanted, MaxEventBytes - SinceEvent) : throw new CliException(tooLarge, CliException.Failed);

        private int Counted(int read)
        {
            SinceEvent += read;
            return read;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
