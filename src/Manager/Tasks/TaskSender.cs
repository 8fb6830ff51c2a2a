using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Tasks;

/// <summary>
/// Runs a task command through the one command path with the request's metadata: X-User-Id as the user, and
/// X-Correlation-Id (or a new id) as the correlation id.
/// </summary>
internal sealed class TaskSender(CommandHandler handler, TimeProvider time)
{
    public DateTimeOffset Now => time.GetUtcNow();

    public Task<CommandResult<TaskEvent, TaskState>> SendAsync(TaskCommand command, HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(request);
        var user = request.Headers["X-User-Id"].FirstOrDefault();
        var correlation = request.Headers["X-Correlation-Id"].FirstOrDefault() ?? request.HttpContext.TraceIdentifier;
        var metadata = new EventMetadata(correlation, null, string.IsNullOrEmpty(user) ? null : user, time.GetUtcNow());
        return handler.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(command.TaskId), command, metadata, cancellationToken);
    }
}
