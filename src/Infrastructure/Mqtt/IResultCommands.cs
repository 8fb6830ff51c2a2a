using Propeller.Application.EventStore;
using Propeller.Domain.Tasks;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// The write side that records a proplet's result when it is not our CommandHandler and inbox: on the Wolverine
/// pipeline (MANAGER_PIPELINE=wolverine, ADR 0014) a Wolverine handler decides it with TaskDecider and commits its
/// events (and sends <c>on_task_complete</c>) before this returns, so <see cref="InboundHandler"/> still acknowledges the
/// message to the broker only after its effect is committed. A redelivered or late result is decided again on the
/// task's state and recorded as ignored (<c>task.result_ignored.v1</c>).
/// </summary>
public interface IResultCommands
{
    Task RecordAsync(TaskCommand.RecordResult command, EventMetadata metadata, CancellationToken cancellationToken);
}
