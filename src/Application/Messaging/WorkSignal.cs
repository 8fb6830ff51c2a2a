namespace Propeller.Application.Messaging;

/// <summary>
/// Wakes a background loop (scheduler, outbox relay) as soon as this node produced work for it, instead of waiting
/// for its next poll. Polling stays as the fallback for work produced by other nodes; a missed signal only delays.
/// </summary>
public sealed class WorkSignal : IDisposable
{
    private readonly SemaphoreSlim _signal = new(0, 1);

    public void Notify()
    {
        try
        {
            if (_signal.CurrentCount == 0)
            {
                _signal.Release();
            }
        }
        catch (SemaphoreFullException)
        {
            // Already signalled: one wake-up covers any amount of work.
        }
    }

    public void Dispose() => _signal.Dispose();

    /// <summary>Waits for a signal or <paramref name="timeout"/>, whichever comes first.</summary>
    public Task WaitAsync(TimeSpan timeout, CancellationToken cancellationToken) => _signal.WaitAsync(timeout, cancellationToken);
}
