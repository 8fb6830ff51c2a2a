using System.Threading.Channels;
using Wolverine;
using Wolverine.Runtime;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// Marks the durable "broker" queue's envelopes handled in batches (ADR 0016 decision 7). Wolverine's durable receiver
/// marks each envelope it handled with an UPDATE of its own, in its own transaction: one commit per start message, half
/// of PostgreSQL's commits per task. Handlers without a Marten session (the broker publisher) hand their envelope here
/// instead; one loop marks every envelope waiting in one round trip through Wolverine's own batch call, and the
/// envelope's status tells the receiver the mark is taken care of (the check it makes for envelopes its transactional
/// middleware already marked). A failed mark is tried again until it succeeds or the node stops; an envelope left
/// unmarked by a crash is recovered and published again, as one whose process died between publishing and its own mark.
/// <para>
/// The marks are written when the host begins to stop (<see cref="StoppingAsync"/>), before Wolverine's receivers
/// drain: once drained, a receiver hands every envelope this node owns back to any node (owner 0), and one still
/// unmarked then could be recovered by another node and published a second time. From then on the receivers mark
/// what they handle themselves.
/// </para>
/// </summary>
public sealed partial class HandledEnvelopeMarks(IWolverineRuntime runtime, ILogger<HandledEnvelopeMarks> logger) : BackgroundService, IHostedLifecycleService
{
    /// <summary>How long the host's stop waits for the marks taken so far to be written (a database that is gone).</summary>
    public static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The most envelopes one round trip marks.</summary>
    public const int MaxBatch = 256;

    /// <summary>How long the first mark of a batch waits for others.</summary>
    public static readonly TimeSpan Linger = TimeSpan.FromMilliseconds(20);

    private static readonly TimeSpan[] Backoff = [TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5)];

    private long _marked;
    private long _roundTrips;

    /// <summary>Envelopes marked handled here so far.</summary>
    public long Marked => Interlocked.Read(ref _marked);

    /// <summary>The round trips (transactions) those marks took.</summary>
    public long RoundTrips => Interlocked.Read(ref _roundTrips);

    private readonly Channel<Envelope> _marks = Channel.CreateUnbounded<Envelope>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>
    /// Takes the mark of <paramref name="envelope"/>, handled successfully by the caller; once the node stops taking
    /// marks, Wolverine's receiver marks it itself.
    /// </summary>
    public void Add(Envelope? envelope)
    {
        if (envelope is not null && _marks.Writer.TryWrite(envelope))
        {
            envelope.Status = EnvelopeStatus.Handled;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<Envelope>(MaxBatch);
        try
        {
            while (await _marks.Reader.WaitToReadAsync(stoppingToken))
            {
                // Nothing waits for a mark (the message is published), so the loop lets marks gather a moment: at
                // hundreds of starts a second a round trip marks dozens instead of one or two.
                await Task.Delay(Linger, stoppingToken);
                batch.Clear();
                while (batch.Count < MaxBatch && _marks.Reader.TryRead(out var envelope))
                {
                    batch.Add(envelope);
                }

                await MarkAsync(batch, stoppingToken);
            }
        }
        catch (Exception) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Takes no more marks and lets the loop write those it has (it ends once they are written), at most
    /// <see cref="FlushTimeout"/>: the host calls this on every service before it stops any, so Wolverine still owns
    /// the envelopes.
    /// </summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        _marks.Writer.TryComplete();
        if (ExecuteTask is { } loop)
        {
            await Task.WhenAny(loop, Task.Delay(FlushTimeout, cancellationToken)).ConfigureAwait(false);
        }
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // What the loop could not write while the host began to stop (a database that is gone), bounded by the host's
        // shutdown timeout; one left unwritten is recovered and published again after the restart.
        _marks.Writer.TryComplete();
        var left = new List<Envelope>();
        while (_marks.Reader.TryRead(out var envelope))
        {
            left.Add(envelope);
        }

        await base.StopAsync(cancellationToken);
        foreach (var chunk in left.Chunk(MaxBatch))
        {
            try
            {
                // One attempt each: while the host stops, the store may already be gone, and retrying would hold the
                // shutdown until its timeout.
                await runtime.Storage.Inbox.MarkIncomingEnvelopeAsHandledAsync(chunk);
                Interlocked.Add(ref _marked, chunk.Length);
                Interlocked.Increment(ref _roundTrips);
            }
            catch (Exception ex)
            {
                LogMarksLeft(logger, left.Count, ex);
                return;
            }
        }
    }

    private async Task MarkAsync(IReadOnlyList<Envelope> batch, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await runtime.Storage.Inbox.MarkIncomingEnvelopeAsHandledAsync(batch);
                Interlocked.Add(ref _marked, batch.Count);
                Interlocked.Increment(ref _roundTrips);
                return;
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                LogMarkFailed(logger, batch.Count, attempt + 1, ex);
                await Task.Delay(Backoff[Math.Min(attempt, Backoff.Length - 1)], cancellationToken);
            }
        }
    }

    [LoggerMessage(EventId = 6211, Level = LogLevel.Warning, Message = "{Count} broker envelopes were not marked handled at shutdown; they are published again after recovery")]
    private static partial void LogMarksLeft(ILogger logger, int count, Exception exception);

    [LoggerMessage(EventId = 6212, Level = LogLevel.Warning, Message = "Marking {Count} broker envelopes handled failed (attempt {Attempt}); trying again")]
    private static partial void LogMarkFailed(ILogger logger, int count, int attempt, Exception exception);
}
