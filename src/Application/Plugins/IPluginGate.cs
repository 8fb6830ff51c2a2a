namespace Propeller.Application.Plugins;

/// <summary>
/// The seam the command pipeline calls before and after task operations (spec propeller-manager.md §7, ARCHITECTURE.md
/// command pipeline: validate → plugin gate → load → decide → append). <see cref="AllowAllPluginGate"/> is used when
/// no plugins are configured; the Wasm plugin host (Propeller.Plugins) implements the original's hooks on it.
/// Gating hooks never throw for a plugin's failure: a trap, timeout or malformed answer comes back as a deny with a
/// reason, and every plugin consulted is listed in <see cref="PluginDecision"/>s so it can be stored in the events'
/// metadata.
/// </summary>
public interface IPluginGate
{
    /// <summary>The <c>authorize</c> chain: plugins in order, the first deny stops it.</summary>
    ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken);

    /// <summary>The <c>enrich_task</c> hook on create: every plugin sees the original task; answers are merged.</summary>
    ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken);

    /// <summary>The <c>on_before_proplet_select</c> hook: may deny, or add required tags and a minimum memory.</summary>
    ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken);

    /// <summary>The <c>on_before_dispatch</c> hook: may deny, or add environment variables for the chosen proplet.</summary>
    ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken);

    /// <summary>The <c>on_task_start</c> notification, after a successful start. Fire and forget; never throws.</summary>
    void OnTaskStarted(PluginTaskInfo task);

    /// <summary>The <c>on_task_complete</c> notification, after a result was stored. Fire and forget; never throws.</summary>
    void OnTaskCompleted(PluginTaskInfo task, bool success, string? error);
}
