namespace Propeller.Manager.Tests.Tasks;

/// <summary>The task API contract on the Wolverine write side (MANAGER_PIPELINE=wolverine, ADR 0014), unchanged.</summary>
public sealed class TaskApiOnWolverineTests : TaskApiTests
{
    protected override string Schema => "api_tasks_wolverine";

    protected override IReadOnlyDictionary<string, string>? Settings { get; } = new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine" };
}
