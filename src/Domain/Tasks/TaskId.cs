namespace Propeller.Domain.Tasks;

/// <summary>Identity of a task. Created with <c>Guid.CreateVersion7()</c> by the handler, then passed in.</summary>
public readonly record struct TaskId(Guid Value)
{
    public override string ToString() => Value.ToString("D");
}
