using Propeller.Domain.Tasks;

namespace Propeller.Application.Tasks;

/// <summary>One page of tasks and how many match in all.</summary>
public sealed record TaskList(long Total, IReadOnlyList<TaskState> Tasks);
