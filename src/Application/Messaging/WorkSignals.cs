namespace Propeller.Application.Messaging;

/// <summary>The node's wake-up signals: a task start was requested (scheduler), outbox rows were written (relay).</summary>
public sealed class WorkSignals : IDisposable
{
    public WorkSignal Scheduler { get; } = new();

    public WorkSignal Outbox { get; } = new();

    public void Dispose()
    {
        Scheduler.Dispose();
        Outbox.Dispose();
    }
}
