namespace Propeller.Manager.Tests.Dispatch;

/// <summary>Every dispatch test again on the Wolverine write side (MANAGER_PIPELINE=wolverine, ADR 0014).</summary>
public sealed class DispatchOnWolverineTests : DispatchTests
{
    protected override string Schema => "api_dispatch_wolverine";

    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine" };

    /// <summary>Results go through the Wolverine handler (committed before the acknowledgement), not our inbox.</summary>
    protected override long ExpectedInboxRows => 0;
}

/// <summary>The dispatch tests on the Wolverine write side in Solo durability mode (the default is Balanced; ADR 0014 decision 13).</summary>
public sealed class DispatchOnWolverineSoloTests : DispatchTests
{
    protected override string Schema => "api_dispatch_wolverine_solo";

    protected override IReadOnlyDictionary<string, string> Settings { get; } =
        new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine", ["MANAGER_DURABILITY_MODE"] = "solo" };

    protected override long ExpectedInboxRows => 0;
}
