using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Application.Tasks;

/// <summary>
/// Which tasks a list shows (all of the given conditions hold): <paramref name="Metadata"/> a JSON object the task's
/// metadata contains, <paramref name="Status"/> its state, <paramref name="Name"/> a case-insensitive part of its name,
/// <paramref name="PropletId"/> the proplet it was dispatched to; <paramref name="NewestFirst"/> reverses the order.
/// </summary>
public sealed record TaskListFilter(string? Metadata = null, TaskStatus? Status = null, string? Name = null, string? PropletId = null, bool NewestFirst = false)
{
    public static TaskListFilter None { get; } = new();
}
