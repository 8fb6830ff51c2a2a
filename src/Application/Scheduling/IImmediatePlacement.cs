using Propeller.Application.Messaging;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Scheduling;

/// <summary>
/// Placement at the moment a start is decided, so that the start, the dispatch and the start message are one append
/// (one transaction fewer per task than starting and then dispatching). The scheduler implements it; whatever it
/// cannot place at once goes the usual way (<see cref="WorkSignals.OfferStart"/>).
/// </summary>
public interface IImmediatePlacement
{
    /// <summary>
    /// The proplet for <paramref name="scheduled"/>, a task that has just become Scheduled, or null when it has to
    /// go the usual way: the scheduler is not running here, plugins take part in placement, a broadcast task, or no
    /// eligible proplet right now.
    /// </summary>
    ValueTask<string?> TryPlaceAsync(TaskState scheduled, CancellationToken cancellationToken);

    /// <summary>The start message for a task that has just been dispatched.</summary>
    OutgoingMessage StartMessage(TaskState dispatched, string? correlationId);

    /// <summary>Called after the dispatch was appended (wakes the outbox relay, logs).</summary>
    void Dispatched(TaskState dispatched);
}
