namespace Propeller.Manager.Tests.Tasks;

/// <summary>Every task route test again with the events in Marten's streams (MANAGER_EVENT_STORE=marten, issue 14).</summary>
public sealed class TaskApiOnMartenTests : TaskApiTests
{
    protected override string Schema => "api_tasks_marten";

    protected override IReadOnlyDictionary<string, string>? Settings { get; } = new Dictionary<string, string> { ["MANAGER_EVENT_STORE"] = "marten" };
}
