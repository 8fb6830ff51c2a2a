using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Propeller.Application.Plugins;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Hosting;

/// <summary>
/// <see cref="IPluginGate"/> over the Wasm plugins of a <see cref="PluginCatalog"/> (spec §7.5–7.8). Each chain uses one
/// snapshot of the catalog. Gating hooks turn a plugin failure into a deny with the reason
/// "plugin NAME HOOK: WHY"; enrich failures are skipped; notifications run in the background, bounded, and
/// <see cref="DrainAsync"/> waits for them at shutdown. Every call made is reported as a <see cref="PluginDecision"/>.
/// </summary>
public sealed class WasmPluginGate(PluginCatalog catalog, ILogger<WasmPluginGate> logger) : IPluginGate, IAsyncDisposable
{
    private const string DeniedByPlugin = "denied by plugin";
    private const string SelectBlocked = "proplet selection blocked by plugin";
    private const string DispatchBlocked = "dispatch blocked by plugin";

    private readonly NotificationCalls _notifications = new(catalog.Options.MaxPendingNotifications);

    public PluginCatalog Catalog => catalog;

    /// <summary>Notifications queued or running.</summary>
    public int PendingNotifications => _notifications.Count;

    public async ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
    {
        var chain = catalog.Current.Active;
        if (chain.Count == 0)
        {
            return GateOutcome.Allow;
        }

        var (reason, decisions) = await RunAllowChainAsync(
            context, task, chain, PluginHooks.Authorize, PluginHookNames.Authorize, () => PluginJson.ContextAndTask(context, task, withAction: true), DeniedByPlugin, _ => { }, cancellationToken);
        return new GateOutcome(reason is null, reason, decisions);
    }

    public async ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
    {
        var chain = catalog.Current.Active;
        if (chain.Count == 0)
        {
            return EnrichOutcome.None;
        }

        byte[]? request = null;
        var decisions = new List<PluginDecision>(chain.Count);
        Dictionary<string, string>? env = null;
        int? priority = null;
        List<string>? inputs = null;
        string? imageUrl = null;
        foreach (var plugin in chain)
        {
            if (!plugin.Has(PluginHooks.EnrichTask))
            {
                continue;
            }

            // Every plugin sees the original task (spec §7.6), so one request serves the whole chain.
            request ??= PluginJson.ContextAndTask(context, task, withAction: false);
            var started = Stopwatch.GetTimestamp();
            EnrichAnswer answer;
            try
            {
                answer = Parse(plugin, PluginHookNames.EnrichTask, PluginResponses.Enrich, await CallAsync(plugin, PluginHookNames.EnrichTask, request, cancellationToken));
            }
            catch (PluginFailure failure)
            {
                decisions.Add(new PluginDecision(plugin.Name, PluginHookNames.EnrichTask, false, failure.Reason, Stopwatch.GetElapsedTime(started)));
                continue;
            }

            decisions.Add(new PluginDecision(plugin.Name, PluginHookNames.EnrichTask, true, null, Stopwatch.GetElapsedTime(started)));
            if (answer.Env is { Count: > 0 })
            {
                env ??= new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var (key, value) in answer.Env)
                {
                    env[key] = value;
                }
            }

            priority = answer.Priority ?? priority;
            if (answer.Inputs is { Count: > 0 })
            {
                inputs ??= [];
                foreach (var input in answer.Inputs)
                {
                    if (!inputs.Contains(input, StringComparer.Ordinal))
                    {
                        inputs.Add(input);
                    }
                }
            }

            if (!string.IsNullOrEmpty(answer.ImageUrl))
            {
                imageUrl = answer.ImageUrl;
            }
        }

        return new EnrichOutcome(env, priority, inputs, imageUrl, decisions);
    }

    public async ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
    {
        var chain = catalog.Current.Active;
        if (chain.Count == 0)
        {
            return SelectOutcome.Allow;
        }

        var tags = new List<string>();
        ulong minMemory = 0;
        var (reason, decisions) = await RunAllowChainAsync(
            context,
            task,
            chain,
            PluginHooks.BeforePropletSelect,
            PluginHookNames.BeforePropletSelect,
            () => PluginJson.ContextAndTask(context, task, withAction: false),
            SelectBlocked,
            answer =>
            {
                tags.AddRange(answer.RequiredTags.Where(tag => !tags.Contains(tag, StringComparer.Ordinal)).Distinct(StringComparer.Ordinal));
                minMemory = Math.Max(minMemory, answer.MinMemoryBytes);
            },
            cancellationToken);
        return new SelectOutcome(reason is null, reason, tags, minMemory, decisions);
    }

    public async ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken)
    {
        var chain = catalog.Current.Active;
        if (chain.Count == 0)
        {
            return DispatchOutcome.Allow;
        }

        var extraEnv = new Dictionary<string, string>(StringComparer.Ordinal);
        var (reason, decisions) = await RunAllowChainAsync(
            context,
            task,
            chain,
            PluginHooks.BeforeDispatch,
            PluginHookNames.BeforeDispatch,
            () => PluginJson.Dispatch(context, task, proplet),
            DispatchBlocked,
            answer =>
            {
                foreach (var (key, value) in answer.ExtraEnv ?? new Dictionary<string, string>())
                {
                    extraEnv[key] = value;
                }
            },
            cancellationToken);
        return new DispatchOutcome(reason is null, reason, extraEnv, decisions);
    }

    public void OnTaskStarted(PluginTaskInfo task)
    {
        ArgumentNullException.ThrowIfNull(task);
        Notify(PluginHooks.TaskStart, PluginHookNames.TaskStart, () => PluginJson.TaskEvent(task));
    }

    public void OnTaskCompleted(PluginTaskInfo task, bool success, string? error)
    {
        ArgumentNullException.ThrowIfNull(task);
        Notify(PluginHooks.TaskComplete, PluginHookNames.TaskComplete, () => PluginJson.CompleteEvent(task, success, error));
    }

    /// <summary>
    /// Waits for the notifications still running (graceful shutdown, spec §7.8), at most
    /// <see cref="PluginHostOptions.DrainTimeout"/> or until <paramref name="cancellationToken"/> (the host's stop token)
    /// fires; new notifications are dropped from now on. Either end with notifications still running is logged as a
    /// warning, and neither throws: the host's stop goes on.
    /// </summary>
    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        if (!await _notifications.DrainAsync(catalog.Options.DrainTimeout, cancellationToken))
        {
            PluginLog.DrainTimedOut(logger, _notifications.Count);
        }
    }

    public async ValueTask DisposeAsync() => await DrainAsync(CancellationToken.None);

    private void Notify(PluginHooks hook, string hookName, Func<byte[]> request)
    {
        var chain = catalog.Current.Active;
        byte[]? bytes = null;
        foreach (var plugin in chain)
        {
            if (!plugin.Has(hook))
            {
                continue;
            }

            bytes ??= request();
            if (!_notifications.TryStart(plugin, hookName, bytes))
            {
                catalog.Runtime.Metrics.NotificationDropped(plugin.Name, hookName);
                PluginLog.NotificationDropped(logger, hookName, plugin.Name, _notifications.PendingOf(plugin.Name));
            }
        }
    }

    /// <summary>
    /// An allow-bearing chain: plugins with <paramref name="hook"/> in order, the same request for all, the first deny
    /// stops it. Returns the deny reason (null when every plugin allowed) and the decisions; <paramref name="merge"/>
    /// sees each allowing answer.
    /// </summary>
    private async ValueTask<(string? DenyReason, List<PluginDecision> Decisions)> RunAllowChainAsync(
        PluginAuthContext context,
        PluginTaskInfo task,
        IReadOnlyList<LoadedPlugin> chain,
        PluginHooks hook,
        string hookName,
        Func<byte[]> request,
        string defaultReason,
        Action<AllowAnswer> merge,
        CancellationToken cancellationToken)
    {
        byte[]? bytes = null;
        var decisions = new List<PluginDecision>(chain.Count);
        foreach (var plugin in chain)
        {
            if (!plugin.Has(hook))
            {
                continue;
            }

            bytes ??= request();
            var (answer, decision) = await CallAllowAsync(plugin, hookName, bytes, defaultReason, cancellationToken);
            decisions.Add(decision);
            if (answer is null)
            {
                // Every deny is logged (who, what, which plugin, why): a denied command appends nothing, so its decisions
                // are in no event's metadata.
                PluginLog.Denied(logger, plugin.Name, hookName, context.Action, string.IsNullOrEmpty(task.Id) ? "(new)" : task.Id, context.UserId ?? "(anonymous)", decision.Reason ?? defaultReason);
                return (decision.Reason, decisions);
            }

            merge(answer);
        }

        return (null, decisions);
    }

    /// <summary>
    /// One allow-bearing call: the parsed answer when it allows, or null with the deny in the decision (a plugin
    /// failure denies with "plugin NAME HOOK: WHY"; a deny without a reason gets <paramref name="defaultReason"/>).
    /// </summary>
    private static async ValueTask<(AllowAnswer? Answer, PluginDecision Decision)> CallAllowAsync(
        LoadedPlugin plugin, string hook, byte[] request, string defaultReason, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        AllowAnswer answer;
        try
        {
            answer = Parse(plugin, hook, PluginResponses.Allow, await CallAsync(plugin, hook, request, cancellationToken));
        }
        catch (PluginFailure failure)
        {
            plugin.RecordDeny(hook);
            return (null, new PluginDecision(plugin.Name, hook, false, failure.Reason, Stopwatch.GetElapsedTime(started)));
        }

        if (!answer.Allow)
        {
            plugin.RecordDeny(hook);
            return (null, new PluginDecision(plugin.Name, hook, false, answer.Reason ?? defaultReason, Stopwatch.GetElapsedTime(started)));
        }

        return (answer, new PluginDecision(plugin.Name, hook, true, answer.Reason, Stopwatch.GetElapsedTime(started)));
    }

    /// <summary>The raw call; plugin failures and malformed answers become <see cref="PluginFailure"/>.</summary>
    private static async ValueTask<byte[]?> CallAsync(LoadedPlugin plugin, string hook, byte[] request, CancellationToken cancellationToken)
    {
        try
        {
            return await plugin.CallAsync(hook, request, returnsValue: true, cancellationToken);
        }
        catch (PluginCallException e)
        {
            throw new PluginFailure(PluginResponses.Truncate($"plugin {plugin.Name} {hook}: {e.Message}"), e);
        }
    }

    private static T Parse<T>(LoadedPlugin plugin, string hook, Func<byte[]?, T> parse, byte[]? response)
    {
        try
        {
            return parse(response);
        }
        catch (FormatException e)
        {
            // Cut like a deny reason: the failure becomes the task's error and goes into events and logs, and its message
            // can repeat what the plugin answered.
            plugin.RecordMalformed(hook, e.Message);
            throw new PluginFailure(PluginResponses.Truncate($"plugin {plugin.Name} {hook}: {e.Message}"), e);
        }
    }
}
