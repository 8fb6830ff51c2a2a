using Propeller.Domain.Tasks;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// A start refers to a large module its task no longer has: an update gave the task a small module (or none), which
/// deleted the module's document, after the start was sent and before it was published (ADR 0018). It can never be
/// published as it was dispatched.
/// </summary>
public sealed class TaskModuleReplacedException(TaskId taskId) : InvalidOperationException(
    $"Task {taskId}'s module was replaced by an update after this start was sent and before it was published: start the task again");
