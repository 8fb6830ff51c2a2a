namespace Propeller.Application.Plugins;

/// <summary>The gate when no plugins are configured: everything is allowed, nothing is changed.</summary>
public sealed class AllowAllPluginGate : IPluginGate
{
    public static AllowAllPluginGate Instance { get; } = new();

    public ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) =>
        ValueTask.FromResult(GateOutcome.Allow);

    public ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) =>
        ValueTask.FromResult(EnrichOutcome.None);

    public ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) =>
        ValueTask.FromResult(SelectOutcome.Allow);

    public ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken) =>
        ValueTask.FromResult(DispatchOutcome.Allow);

    public void OnTaskStarted(PluginTaskInfo task)
    {
    }

    public void OnTaskCompleted(PluginTaskInfo task, bool success, string? error)
    {
    }
}
