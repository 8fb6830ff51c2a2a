namespace Propeller.Manager.Tests.Proplets;

/// <summary>
/// Every proplet route test again on the Wolverine write side (MANAGER_PIPELINE=wolverine, ADR 0014): discovery and
/// Last Will from the broker decided by the Wolverine proplet handler.
/// </summary>
public sealed class PropletApiOnWolverineTests : PropletApiTests
{
    protected override string Schema => "api_proplets_wolverine";

    protected override IReadOnlyDictionary<string, string>? Settings { get; } = new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine" };
}
