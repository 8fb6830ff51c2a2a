namespace Propeller.Manager.Tests.Plugins;

/// <summary>Every plugin gate test again on the Wolverine write side (MANAGER_PIPELINE=wolverine, ADR 0014).</summary>
public sealed class PluginGateOnWolverineTests : PluginGateTests
{
    protected override string Schema => "api_plugins_wolverine";

    protected override IReadOnlyDictionary<string, string> Settings { get; } = new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine" };
}
