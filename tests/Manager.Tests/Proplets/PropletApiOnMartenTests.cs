namespace Propeller.Manager.Tests.Proplets;

/// <summary>Every proplet route test again with the events in Marten's streams (MANAGER_EVENT_STORE=marten, issue 14).</summary>
public sealed class PropletApiOnMartenTests : PropletApiTests
{
    protected override string Schema => "api_proplets_marten";

    protected override IReadOnlyDictionary<string, string>? Settings { get; } = new Dictionary<string, string> { ["MANAGER_EVENT_STORE"] = "marten" };
}
