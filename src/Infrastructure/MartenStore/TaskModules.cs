using System.Text.Json;
using Marten;
using Propeller.Application.Tasks;
using Propeller.Contracts.Mqtt;
using Propeller.Domain.Tasks;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// Puts a large module back where the task view holds its reference (ADR 0018): into a start message just before it is
/// published, and into a task a latent invocation deploys again. Read from the task's <see cref="TaskModule"/> document.
/// </summary>
public sealed class TaskModules(IDocumentStore store)
{
    /// <summary><paramref name="task"/> with its module in place of a reference (as it is when it holds none).</summary>
    /// <exception cref="TaskModuleMissingException">The view refers to a module no document holds.</exception>
    public async Task<TaskState> ResolveAsync(TaskState task, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        return task.Spec is { File: var file } spec && ModuleReference.IsReference(file)
            ? task with { Spec = spec with { File = await LoadAsync(task.Id, cancellationToken) } }
            : task;
    }

    /// <summary>The start message <paramref name="payload"/> of task <paramref name="taskId"/> with its module in place of a reference.</summary>
    /// <exception cref="TaskModuleMissingException">The message refers to a module no document holds.</exception>
    /// <exception cref="TaskModuleReplacedException">The message refers to a module the task no longer has (updated since).</exception>
    public async Task<byte[]> ResolveStartAsync(byte[] payload, TaskId taskId, CancellationToken cancellationToken)
    {
        var start = JsonSerializer.Deserialize<StartMessage>(payload) ?? throw new JsonException("a start message was null");
        return ModuleReference.IsReference(start.File)
            ? JsonSerializer.SerializeToUtf8Bytes(start with { File = await LoadAsync(taskId, cancellationToken) })
            : payload;
    }

    private async Task<string> LoadAsync(TaskId taskId, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        if (await session.LoadAsync<TaskModule>(taskId.Value, cancellationToken) is { } module)
        {
            return module.File;
        }

        // Gone on purpose, or lost: an update that gave the task a small module (or none) deletes its document, and a
        // start sent before it (dispatched, not yet published) then refers to a module that no longer exists; replayed,
        // it would fail again. A view that still refers to one is a projection to rebuild (the dead letter is replayable).
        var task = await session.LoadAsync<TaskState>(taskId, cancellationToken);
        throw task is { Spec.File: var file } && !ModuleReference.IsReference(file) ? new TaskModuleReplacedException(taskId) : new TaskModuleMissingException(taskId);
    }
}

/// <summary>A task view refers to a module whose <see cref="TaskModule"/> document is missing (ADR 0018: rebuild task_module).</summary>
public sealed class TaskModuleMissingException(TaskId taskId) : InvalidOperationException(
    $"Task {taskId}'s module is held by reference, but no task_module document holds it: rebuild the projection " +
    $"(propeller-manager rebuild task_module), then replay this dead letter or start the task again");
