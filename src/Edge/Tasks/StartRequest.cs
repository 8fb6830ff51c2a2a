using Propeller.Contracts.Mqtt;

namespace Propeller.Edge.Tasks;

/// <summary>A decoded start command (<see cref="StartMessage"/>) with the proplet's own interpretation: the execution
/// limits and the monitoring profile.</summary>
public sealed record StartRequest(StartMessage Message, TaskLimits Limits, MonitoringProfile Monitoring)
{
    public string Id => Message.Id;

    public string Name => Message.Name;

    public IReadOnlyList<string> Inputs => Message.Inputs ?? [];

    public IReadOnlyList<string> CliArgs => Message.CliArgs ?? [];

    public IReadOnlyDictionary<string, string> Env => Message.Env ?? new Dictionary<string, string>();

    /// <summary>The manager's attempt number of this run (our extension; none from the original manager).</summary>
    public int? Attempt => Message.Attempt;

    /// <summary>This run (attempt and dispatch, our extension), when the start names both: our manager's do.</summary>
    internal Run? Run => Message is { Attempt: { } attempt, Dispatch: { } dispatch } ? new Run(attempt, dispatch) : null;
}
