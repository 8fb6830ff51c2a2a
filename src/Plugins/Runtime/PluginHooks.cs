namespace Propeller.Plugins.Runtime;

/// <summary>The hook exports a plugin has (spec §7.2, plus the proplet's <c>enrich</c> and the job bridge's <c>handle_job</c>).</summary>
[Flags]
public enum PluginHooks
{
    None = 0,
    Authorize = 1,
    EnrichTask = 2,
    BeforePropletSelect = 4,
    BeforeDispatch = 8,
    TaskStart = 16,
    TaskComplete = 32,
    Enrich = 64,
    HandleJob = 128,
}

/// <summary>Export names of the hooks.</summary>
public static class PluginHookNames
{
    public const string Authorize = "authorize";
    public const string EnrichTask = "enrich_task";
    public const string BeforePropletSelect = "on_before_proplet_select";
    public const string BeforeDispatch = "on_before_dispatch";
    public const string TaskStart = "on_task_start";
    public const string TaskComplete = "on_task_complete";
    public const string Enrich = "enrich";
    public const string HandleJob = "handle_job";

    internal static readonly (string Name, PluginHooks Hook, bool Returns)[] All =
    [
        (Authorize, PluginHooks.Authorize, true),
        (EnrichTask, PluginHooks.EnrichTask, true),
        (BeforePropletSelect, PluginHooks.BeforePropletSelect, true),
        (BeforeDispatch, PluginHooks.BeforeDispatch, true),
        (TaskStart, PluginHooks.TaskStart, false),
        (TaskComplete, PluginHooks.TaskComplete, false),
        (Enrich, PluginHooks.Enrich, true),
        (HandleJob, PluginHooks.HandleJob, true),
    ];

    public static IReadOnlyList<string> Names(PluginHooks hooks) => [.. All.Where(h => hooks.HasFlag(h.Hook)).Select(h => h.Name)];
}
