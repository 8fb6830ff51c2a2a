using System.Collections.Concurrent;
using System.Threading.Channels;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Messaging;

/// <summary>
/// The node's wake-up signals: a task start was requested (scheduler), outbox rows were written (relay). A start made
/// on this node also hands its task to the scheduler directly (<see cref="OfferStart"/>), so it is placed without
/// waiting for a polling round; the polling round remains the fallback (other nodes, waiting tasks, a full queue).
/// </summary>
public sealed class WorkSignals : IDisposable
{
    private readonly Channel<TaskState> _starts = Channel.CreateBounded<TaskState>(new BoundedChannelOptions(4096) { FullMode = BoundedChannelFullMode.DropWrite });

    public WorkSignal Scheduler { get; } = new();

    public WorkSignal Outbox { get; } = new();

    /// <summary>Fresh starts for the scheduler's fast path.</summary>
    public ChannelReader<TaskState> Starts => _starts.Reader;

    /// <summary>True once a scheduler reads <see cref="Starts"/> (a node without a broker has none).</summary>
    public bool FastPath { get; set; }

    /// <summary>Tasks handed to the fast path and not placed yet: the polling round leaves them alone.</summary>
    public ConcurrentDictionary<TaskId, byte> PendingStarts { get; } = new();

    /// <summary>Hands a task whose start was just appended to the scheduler, or wakes the polling round.</summary>
    public void OfferStart(TaskState task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (FastPath && PendingStarts.TryAdd(task.Id, 0))
        {
            if (_starts.Writer.TryWrite(task))
            {
                return;
            }

            PendingStarts.TryRemove(task.Id, out _);
        }

        Scheduler.Notify();
    }

    public void Dispose()
    {
        _starts.Writer.TryComplete();
        Scheduler.Dispose();
        Outbox.Dispose();
    }
}
