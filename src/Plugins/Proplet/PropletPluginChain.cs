using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Proplet;

/// <summary>
/// The proplet's plugins (propeller-edge.md §5) over the manager's JSON core-module ABI until the engine has the
/// component model (docs/plugins.md): hooks <c>authorize</c>, <c>enrich</c> (or <c>enrich_task</c>),
/// <c>on_task_start</c> and <c>on_task_complete</c>, with the same limits and isolation as manager plugins.
/// No ASP.NET dependency: the proplet constructs it with <see cref="Load"/> and calls it directly.
/// </summary>
public sealed class PropletPluginChain : IDisposable
{
    public const string DirectoryVariable = "PROPLET_PLUGIN_DIR";

    private readonly PluginRuntime _runtime;
    private readonly NotificationCalls _notifications = new();

    private PropletPluginChain(PluginRuntime runtime, PluginSet set)
    {
        _runtime = runtime;
        Plugins = set;
    }

    public PluginSet Plugins { get; }

    /// <summary>
    /// Loads <paramref name="directory"/> (PROPLET_PLUGIN_DIR): unset or missing gives an empty chain, a directory that
    /// cannot be read disables plugins with a warning, a file that cannot be loaded is skipped.
    /// </summary>
    public static PropletPluginChain Load(string? directory, ILogger logger, PluginLimits? limits = null)
    {
        var runtime = new PluginRuntime(new PluginHostOptions { Directory = directory, DefaultLimits = limits ?? PluginLimits.Default }, logger, new PluginMetrics());
        PluginSet set;
        try
        {
            set = PluginLoader.Load(runtime, directory, new ConcurrentDictionary<string, PluginCounters>(StringComparer.Ordinal));
        }
        catch (PluginDirectoryException e)
        {
            LogDisabled(logger, e.Message);
            set = PluginSet.Empty;
        }

        return new PropletPluginChain(runtime, set);
    }

    /// <summary>Plugins in order; the first deny wins (reason or "denied by plugin"); a failing plugin denies with "plugin error: WHY".</summary>
    public async ValueTask<(bool Allowed, string? Reason)> AuthorizeAsync(PropletTaskInfo task, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        byte[]? request = null;
        foreach (var plugin in Plugins.Active)
        {
            if (!plugin.Has(PluginHooks.Authorize))
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
                return (false, $"plugin error: {plugin.Name}: {e.Message}");
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
        foreach (var plugin in Plugins.Active)
        {
            var hook = plugin.Has(PluginHooks.Enrich) ? PluginHookNames.Enrich : plugin.Has(PluginHooks.EnrichTask) ? PluginHookNames.EnrichTask : null;
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
    }

    /// <summary><c>on_task_complete</c> with <c>{"task_id","success","output"?,"error"?}</c>, fire and forget.</summary>
    public void OnTaskComplete(string taskId, bool success, string? output, string? error) =>
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

    /// <summary>Waits for outstanding notifications; false when <paramref name="timeout"/> passed first.</summary>
    public Task<bool> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken) => _notifications.DrainAsync(timeout, cancellationToken);

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
            _notifications.Start(plugin, hookName, bytes);
        }
    }

    public void Dispose()
    {
        foreach (var plugin in Plugins.All)
        {
            plugin.Dispose();
        }

        _runtime.Metrics.Dispose();
        _runtime.Dispose();
    }

    private static void LogDisabled(ILogger logger, string reason) => PropletLog.Disabled(logger, reason);
}
