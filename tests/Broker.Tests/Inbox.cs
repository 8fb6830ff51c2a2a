using System.Threading.Channels;

namespace Propeller.Broker.Tests;

/// <summary>A connection's handler that queues what arrives, for the test to read.</summary>
internal sealed class Inbox
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly Channel<ReceivedMessage> _messages = Channel.CreateUnbounded<ReceivedMessage>();

    public static Inbox Of(BrokerConnection connection)
    {
        var inbox = new Inbox();
        connection.Handler = (messages, _) =>
        {
            foreach (var message in messages)
            {
                inbox._messages.Writer.TryWrite(message);
            }

            return ValueTask.CompletedTask;
        };
        return inbox;
    }

    /// <summary>A batch handler that hands each message to <paramref name="handle"/>, in order.</summary>
    public static Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask> Each(Func<ReceivedMessage, CancellationToken, ValueTask> handle) =>
        async (messages, cancellationToken) =>
        {
            foreach (var message in messages)
            {
                await handle(message, cancellationToken);
            }
        };

    /// <summary>The next message, waiting as long as <paramref name="cancellationToken"/> allows.</summary>
    public ValueTask<ReceivedMessage> ReadAsync(CancellationToken cancellationToken) => _messages.Reader.ReadAsync(cancellationToken);

    public async Task<ReceivedMessage> ReceiveAsync(CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(Timeout);
        return await _messages.Reader.ReadAsync(cts.Token);
    }

    public async Task<bool> NothingAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(wait);
        try
        {
            await _messages.Reader.WaitToReadAsync(cts.Token);
            return false;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return true;
        }
    }
}
