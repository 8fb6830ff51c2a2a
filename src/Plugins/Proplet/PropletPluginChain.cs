using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Runtime;
using Propeller.WasmHost;
using Wasmtime.Components;

namespace Propeller.Plugins.Proplet;

/// <summary>
/// The proplet's plugins (propeller-edge.md §5), in file-name order: WIT components of
/// <c>propeller:proplet-plugin@0.1.0</c> as the original's (<see cref="ComponentPlugin"/>, ADR 0011), and core modules
/// with the manager's JSON ABI (docs/plugins.md: hooks <c>authorize</c>, <c>enrich</c> or <c>enrich_task</c>,
/// <c>on_task_start</c>, <c>on_task_complete</c>), both under the plugin limits.
/// No ASP.NET dependency: the proplet constructs it with <see cref="Load"/> and calls it directly.
/// </summary>
public sealed class PropletPluginChain : IDisposable
{
    public const string DirectoryVariable = "PROPLET_PLUGIN_DIR";

    private readonly PluginRuntime _runtime;
    private readonly NotificationCalls _notifications;
    private readonly ComponentLinker? _componentLinker;
    private readonly ILogger _logger;

    /// <summary>Every active plugin in file-name order: a JSON core module or a component.</summary>
    private readonly IReadOnlyList<(LoadedPlugin? Core, ComponentPlugin? Component)> _order;

    private PropletPluginChain(PluginRuntime runtime, PluginSet set, IReadOnlyList<(string File, ComponentPlugin Plugin)> components, ComponentLinker? linker, ILogger logger)
    {
        _runtime = runtime;
        _notifications = new NotificationCalls(runtime.Options.MaxPendingNotifications);
        _componentLinker = linker;
        _logger = logger;
        Plugins = set;
        Components = [.. components.Select(c => c.Plugin)];
        _order = [.. set.Active.Select(p => (p.File, (LoadedPlugin?)p, (ComponentPlugin?)null))
            .Concat(components.Select(c => (c.File, (LoadedPlugin?)null, (ComponentPlugin?)c.Plugin)))
            .OrderBy(e => Path.GetFileName(e.Item1), StringComparer.Ordinal)
            .Select(e => (e.Item2, e.Item3))];
    }

    /// <summary>The JSON core-module plugins.</summary>
    public PluginSet Plugins { get; }

    /// <summary>The component plugins.</summary>
    public IReadOnlyList<ComponentPlugin> Components { get; }

    /// <summary>Whether any plugin takes part (the proplet skips the chain otherwise).</summary>
    public bool Any => Plugins.All.Count > 0 || Components.Count > 0;

    /// <summary>
    /// Loads <paramref name="directory"/> (PROPLET_PLUGIN_DIR): unset or missing gives an empty chain, a directory that
    /// cannot be read disables plugins with a warning, a file that cannot be loaded is skipped.
    /// </summary>
    public static PropletPluginChain Load(string? directory, ILogger logger, PluginLimits? limits = null)
    {
        var runtime = new PluginRuntime(new PluginHostOptions { Directory = directory, DefaultLimits = limits ?? PluginLimits.Default }, logger, new PluginMetrics());
        PluginSet set;
        List<(string, ComponentPlugin)> components = [];
        ComponentLinker? linker = null;
        try
        {
            set = PluginLoader.Load(runtime, directory, new ConcurrentDictionary<string, PluginCounters>(StringComparer.Ordinal), skipComponents: true);
            foreach (var file in PluginLoader.ComponentFiles(directory))
            {
                if (linker is null)
                {
                    linker = new ComponentLinker(WasmEngine.Shared.Engine);
                    linker.AddWasiPreview2();
                }

                try
                {
                    components.Add((file, ComponentPlugin.Load(file, new ModuleCache(WasmEngine.Shared), linker, limits ?? PluginLimits.Default)));
                    PropletLog.ComponentLoaded(logger, Path.GetFileNameWithoutExtension(file), file);
                }
                catch (PluginLoadException e)
                {
                    PropletLog.ComponentSkipped(logger, file, e.Message);
                }
            }
        }
        catch (PluginDirectoryException e)
        {
            LogDisabled(logger, e.Message);
            set = PluginSet.Empty;
        }

        return new PropletPluginChain(runtime, set, components, linker, logger);
    }

    /// <summary>Plugins in order; the first deny wins (reason or "denied by plugin"); a failing plugin denies with "plugin error: WHY".</summary>
    public async ValueTask<(bool Allowed, string? Reason)> AuthorizeAsync(PropletTaskInfo task, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        byte[]? request = null;
        foreach (var (plugin, component) in _order)
        {
            if (component is not null)
            {
                if (!component.Has("authorize"))
                {
                    continue;
                }

                try
                {
                    var response = (await component.CallAsync("authorize", TaskInfoValue(task), cancellationToken))!;
                    if (!response.Field("allow").AsBool())
                    {
                        var reason = response.Field("reason") is { IsSome: true, Payload: { } text } ? text.AsString() : null;
                        return (false, reason is { Length: > 0 } ? reason : "denied by plugin");
                    }
                }
                catch (ComponentPluginException e)
                {
                    return (false, PluginResponses.Truncate($"plugin error: {e.Message}"));
                }

                continue;
            }

            if (!plugin!.Has(PluginHooks.Authorize))
            {
                continue;
            }

            request ??= Request(task);
            AllowAnswer answer;
            try
            {
                answer = PluginResponses.Allow(await plugin.CallAsync(PluginHookNames.Authorize, request, true, cancellationToken));
            }
            catch (Exception e) when (e is PluginCallException or FormatException)
            {
                if (e is FormatException)
                {
                    plugin.RecordMalformed(PluginHookNames.Authorize, e.Message);
                }

                plugin.RecordDeny(PluginHookNames.Authorize);
                return (false, PluginResponses.Truncate($"plugin error: {plugin.Name}: {e.Message}"));
            }

            if (!answer.Allow)
            {
                plugin.RecordDeny(PluginHookNames.Authorize);
                return (false, answer.Reason ?? "denied by plugin");
            }
        }

        return (true, null);
    }

    /// <summary>The env additions of all plugins, later plugins overriding earlier ones; failing plugins are skipped.</summary>
    public async ValueTask<IReadOnlyDictionary<string, string>> EnrichAsync(PropletTaskInfo task, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        byte[]? request = null;
        foreach (var (plugin, component) in _order)
        {
            if (component is not null)
            {
                if (component.Has("enrich"))
                {
                    try
                    {
                        foreach (var pair in (await component.CallAsync("enrich", TaskInfoValue(task), cancellationToken))!.Field("env").AsList())
                        {
                            var tuple = pair.AsTuple();
                            env[tuple[0].AsString()] = tuple[1].AsString();
                        }
                    }
                    catch (ComponentPluginException e)
                    {
                        PropletLog.ComponentFailed(_logger, e.Message);
                    }
                }

                continue;
            }

            var hook = plugin!.Has(PluginHooks.Enrich) ? PluginHookNames.Enrich : plugin.Has(PluginHooks.EnrichTask) ? PluginHookNames.EnrichTask : null;
            if (hook is null)
            {
                continue;
            }

            request ??= Request(task);
            try
            {
                foreach (var (key, value) in PluginResponses.Enrich(await plugin.CallAsync(hook, request, true, cancellationToken)).Env ?? new Dictionary<string, string>())
                {
                    env[key] = value;
                }
            }
            catch (PluginCallException)
            {
                // Logged and counted by the plugin; enrich failures are skipped (spec).
            }
            catch (FormatException e)
            {
                plugin.RecordMalformed(hook, e.Message);
            }
        }

        return env;
    }

    /// <summary><c>on_task_start</c>, fire and forget.</summary>
    public void OnTaskStart(PropletTaskInfo task)
    {
        ArgumentNullException.ThrowIfNull(task);
        Notify(PluginHooks.TaskStart, PluginHookNames.TaskStart, () => Request(task));
        NotifyComponents("on-task-start", () => TaskInfoValue(task));
    }

    /// <summary><c>on_task_complete</c> with <c>{"task_id","success","output"?,"error"?}</c>, fire and forget.</summary>
    public void OnTaskComplete(string taskId, bool success, string? output, string? error)
    {
        NotifyComponents("on-task-complete", () => ComponentValue.Record([
            new("task-id", ComponentValue.String(taskId)),
            new("success", ComponentValue.Bool(success)),
            new("output", string.IsNullOrEmpty(output) ? ComponentValue.None() : ComponentValue.Some(ComponentValue.String(output))),
            new("error", string.IsNullOrEmpty(error) ? ComponentValue.None() : ComponentValue.Some(ComponentValue.String(error))),
        ]));
        Notify(PluginHooks.TaskComplete, PluginHookNames.TaskComplete, () => PluginJson.Write(w =>
        {
            w.WriteStartObject();
            w.WriteString("task_id", taskId);
            w.WriteBoolean("success", success);
            if (!string.IsNullOrEmpty(output))
            {
                w.WriteString("output", output);
            }

            if (!string.IsNullOrEmpty(error))
            {
                w.WriteString("error", error);
            }

            w.WriteEndObject();
        }));
    }

    /// <summary>Waits for outstanding notifications (core modules' and components') and drops those that come after;
    /// false when <paramref name="timeout"/> passed first (logged).</summary>
    public async Task<bool> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (await _notifications.DrainAsync(timeout, cancellationToken))
        {
            return true;
        }

        PluginLog.DrainTimedOut(_logger, _notifications.Count);
        return false;
    }

    /// <summary><c>{"task":{"id","name","image_url","cli_args","env","daemon","encrypted"}}</c>: every field present, as in the WIT record.</summary>
    internal static byte[] Request(PropletTaskInfo task) => PluginJson.Write(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("task");
        w.WriteString("id", task.Id);
        w.WriteString("name", task.Name);
        w.WriteString("image_url", task.ImageUrl);
        PluginJson.WriteStrings(w, "cli_args", task.CliArgs);
        PluginJson.WriteMap(w, "env", task.Env);
        w.WriteBoolean("daemon", task.Daemon);
        w.WriteBoolean("encrypted", task.Encrypted);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    /// <summary>The WIT <c>task-info</c> record (env in the request's order).</summary>
    internal static ComponentValue TaskInfoValue(PropletTaskInfo task) => ComponentValue.Record([
        new("id", ComponentValue.String(task.Id)),
        new("name", ComponentValue.String(task.Name)),
        new("image-url", ComponentValue.String(task.ImageUrl)),
        new("cli-args", ComponentValue.List([.. task.CliArgs.Select(ComponentValue.String)])),
        new("env", ComponentValue.List([.. task.Env.Select(p => ComponentValue.Tuple([ComponentValue.String(p.Key), ComponentValue.String(p.Value)]))])),
        new("daemon", ComponentValue.Bool(task.Daemon)),
        new("encrypted", ComponentValue.Bool(task.Encrypted)),
    ]);

    /// <summary>A notification to every component plugin that has it, fire and forget; failures are logged.</summary>
    private void NotifyComponents(string function, Func<ComponentValue> argument)
    {
        foreach (var component in Components)
        {
            if (!component.Has(function))
            {
                continue;
            }

            var value = argument();
            var started = _notifications.TryStart(component.Name, async () =>
            {
                try
                {
                    await component.CallAsync(function, value, CancellationToken.None);
                }
                catch (ComponentPluginException e)
                {
                    PropletLog.ComponentFailed(_logger, e.Message);
                }
#pragma warning disable CA1031 // A notification runs in the background: whatever it throws is logged, never lost unobserved.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    PropletLog.ComponentFailed(_logger, $"{component.Name} {function}: {e.GetType().Name}: {e.Message}");
                }
            });
            if (!started)
            {
                Dropped(component.Name, function);
            }
        }
    }

    private void Dropped(string plugin, string hookName)
    {
        _runtime.Metrics.NotificationDropped(plugin, hookName);
        PluginLog.NotificationDropped(_logger, hookName, plugin, _notifications.PendingOf(plugin));
    }

    private void Notify(PluginHooks hook, string hookName, Func<byte[]> request)
    {
        byte[]? bytes = null;
        foreach (var plugin in Plugins.Active)
        {
            if (!plugin.Has(hook))
            {
                continue;
            }

            bytes ??= request();
            if (!_notifications.TryStart(plugin, hookName, bytes))
            {
                Dropped(plugin.Name, hookName);
            }
        }
    }

    public void Dispose()
    {
        if (_notifications.Count > 0 || Components.Any(c => c.Abandoned > 0))
        {
            // A drain that timed out, or calls given up blocked in a host call: the calls still running use the plugins'
            // native objects, which the process's exit frees instead.
            return;
        }

        foreach (var plugin in Plugins.All)
        {
            plugin.Dispose();
        }

        _runtime.Metrics.Dispose();
        _runtime.Dispose();
        _componentLinker?.Dispose();
    }

    private static void LogDisabled(ILogger logger, string reason) => PropletLog.Disabled(logger, reason);
}
