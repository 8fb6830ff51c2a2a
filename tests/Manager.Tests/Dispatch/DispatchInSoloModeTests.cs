namespace Propeller.Manager.Tests.Dispatch;

/// <summary>The dispatch tests again in Wolverine's Solo durability mode (the default is Balanced; ADR 0014).</summary>
public sealed class DispatchInSoloModeTests : DispatchTests
{
    protected override string Schema => "api_dispatch_solo";

    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string> { ["MANAGER_DURABILITY_MODE"] = "solo" };
}
