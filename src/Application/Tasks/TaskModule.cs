using System.Globalization;
using JasperFx.Events;
using Marten;
using Marten.Events.Projections;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Tasks;

/// <summary>
/// A task's inline module (its base64 <c>file</c>) when it is larger than <see cref="ModuleReference.InlineLimit"/>: kept
/// in a document of its own, written when the module is set, so that the task view (<see cref="TaskState"/>, rewritten on
/// every state change) holds a <see cref="ModuleReference"/> instead of the module (ADR 0018).
/// </summary>
public sealed class TaskModule
{
    public Guid Id { get; set; }

    /// <summary>The module, base64 as the task's spec holds it.</summary>
    public string File { get; set; } = "";
}

/// <summary>
/// What the task view and later events hold in place of a large module (ADR 0018): <c>@module:</c>, the module's first
/// and last ten base64 characters (what a response shows of it), <c>:</c> and its length. It is not base64 (<c>@</c> and
/// <c>:</c> are not in the alphabet), so no client can send one: the API accepts a file only as base64.
/// </summary>
public static class ModuleReference
{
    /// <summary>Modules up to this many base64 characters (48 KiB of binary) stay in the task view.</summary>
    public const int InlineLimit = 64 * 1024;

    private const string Prefix = "@module:";

    /// <summary>Whether <paramref name="file"/> is a reference rather than a module.</summary>
    public static bool IsReference(string? file) => file is not null && file.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>Whether <paramref name="file"/> is a module too large for the task view.</summary>
    public static bool IsLarge(string? file) => file is { Length: > InlineLimit } && !IsReference(file);

    /// <summary>The reference to <paramref name="module"/> (a module, not a reference).</summary>
    public static string For(string module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return string.Create(CultureInfo.InvariantCulture, $"{Prefix}{module.AsSpan(0, 10)}{module.AsSpan(module.Length - 10)}:{module.Length}");
    }

    /// <summary>The module's first and last ten characters, from a reference.</summary>
    public static (string First, string Last) Ends(string reference)
    {
        ArgumentNullException.ThrowIfNull(reference);
        return (reference.Substring(Prefix.Length, 10), reference.Substring(Prefix.Length + 10, 10));
    }

    /// <summary><paramref name="state"/> with its large module replaced by a reference (the view's form of it).</summary>
    public static TaskState Referenced(TaskState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return state.Spec is { File: var file } spec && IsLarge(file) ? state with { Spec = spec with { File = For(file!) } } : state;
    }
}

/// <summary>
/// Keeps <see cref="TaskModule"/> documents (inline, in the append's transaction): stored when a task is created or
/// updated with a large module, deleted when an update sets a small one or none, or the task is deleted. An update that
/// leaves the module as it was carries its reference and changes nothing here.
/// </summary>
public sealed partial class TaskModuleProjection : EventProjection
{
    public const string ProjectionName = "task_module";

    public TaskModuleProjection()
    {
        Name = ProjectionName;
        IncludeType<TaskEvent.TaskCreated>();
        IncludeType<TaskEvent.TaskUpdated>();
        IncludeType<TaskEvent.TaskDeleted>();
    }

    public override ValueTask ApplyAsync(IDocumentOperations operations, IEvent e, CancellationToken cancellation)
    {
        ArgumentNullException.ThrowIfNull(operations);
        ArgumentNullException.ThrowIfNull(e);
        switch (e.Data)
        {
            case TaskEvent.TaskCreated { Spec.File: var file } created when ModuleReference.IsLarge(file):
                operations.Store(new TaskModule { Id = created.TaskId.Value, File = file! });
                break;
            case TaskEvent.TaskUpdated { Spec.File: var file } updated:
                if (ModuleReference.IsLarge(file))
                {
                    operations.Store(new TaskModule { Id = updated.TaskId.Value, File = file! });
                }
                else if (!ModuleReference.IsReference(file))
                {
                    operations.Delete<TaskModule>(updated.TaskId.Value);
                }

                break;
            case TaskEvent.TaskDeleted deleted:
                operations.Delete<TaskModule>(deleted.TaskId.Value);
                break;
        }

        return ValueTask.CompletedTask;
    }
}
