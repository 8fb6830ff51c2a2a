using Microsoft.Extensions.Logging;

namespace Propeller.Plugins.Runtime;

internal static partial class PluginLog
{
    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "Plugin directory {Directory} does not exist; no plugins loaded")]
    public static partial void DirectoryMissing(ILogger logger, string directory);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Error, Message = "Plugin {Plugin} ({File}) skipped: {Error}")]
    public static partial void Skipped(ILogger logger, string plugin, string file, string error);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Plugin {Plugin} has no authorize export: all requests will be permitted by it")]
    public static partial void NoAuthorize(ILogger logger, string plugin);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Information, Message = "Plugin {Plugin} loaded from {File} (sha256 {Hash}, hooks {Hooks})")]
    public static partial void Loaded(ILogger logger, string plugin, string file, string hash, string hooks);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Information, Message = "plugin={Plugin} {Line}")]
    public static partial void Stdout(ILogger logger, string plugin, string line);

    [LoggerMessage(EventId = 5006, Level = LogLevel.Warning, Message = "plugin={Plugin} {Line}")]
    public static partial void Stderr(ILogger logger, string plugin, string line);

    [LoggerMessage(EventId = 5007, Level = LogLevel.Warning, Message = "plugin={Plugin} dropped {Bytes} bytes of output beyond the capture limit")]
    public static partial void OutputDropped(ILogger logger, string plugin, long bytes);

    [LoggerMessage(EventId = 5015, Level = LogLevel.Information, Message = "Plugin {Plugin} denied {Hook} ({Action}) of task {TaskId} for user {User}: {Reason}")]
    public static partial void Denied(ILogger logger, string plugin, string hook, Application.Plugins.PluginAction action, string taskId, string user, string reason);

    [LoggerMessage(EventId = 5014, Level = LogLevel.Warning, Message = "plugin={Plugin} {Lines} more lines of output ({Bytes} bytes) not logged: at most {Max} lines per stream and call are")]
    public static partial void OutputLinesOmitted(ILogger logger, string plugin, int lines, long bytes, int max);

    [LoggerMessage(EventId = 5008, Level = LogLevel.Warning, Message = "Plugin {Plugin} {Hook} failed ({Kind}): {Error}")]
    public static partial void CallFailed(ILogger logger, string plugin, string hook, PluginFailureKind kind, string error);

    [LoggerMessage(EventId = 5009, Level = LogLevel.Information, Message = "Plugins reloaded: {Count} loaded, {Skipped} skipped, {Kept} kept at their previous version")]
    public static partial void Reloaded(ILogger logger, int count, int skipped, int kept);

    [LoggerMessage(EventId = 5010, Level = LogLevel.Warning, Message = "Dropped an {Hook} notification of plugin {Plugin}: {Pending} of its notifications pending")]
    public static partial void NotificationDropped(ILogger logger, string hook, string plugin, int pending);

    [LoggerMessage(EventId = 5011, Level = LogLevel.Warning, Message = "Shutdown: {Pending} plugin notifications still running when the drain ended (its timeout passed or the host's stop was cancelled)")]
    public static partial void DrainTimedOut(ILogger logger, int pending);

    [LoggerMessage(EventId = 5012, Level = LogLevel.Information, Message = "Plugin {Plugin} is inactive (manifest); it is listed but not called")]
    public static partial void Inactive(ILogger logger, string plugin);

    [LoggerMessage(EventId = 5013, Level = LogLevel.Error, Message = "Plugins not reloaded, the ones loaded before stay in place: {Reason}")]
    public static partial void ReloadFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 5016, Level = LogLevel.Warning, Message = "Plugin {Plugin}: {File} was not loaded by the reload ({Error}); its previous version (sha256 {Hash}) stays loaded")]
    public static partial void KeptPrevious(ILogger logger, string plugin, string file, string error, string hash);

    [LoggerMessage(EventId = 5017, Level = LogLevel.Warning, Message = "Plugin {Plugin}: its start function ran past {LoadLimitMs} ms at load; it stays loaded without a ready instance, and each call makes one under its own time limit of {TimeoutMs} ms (a call that times out is denied)")]
    public static partial void LoadedWithoutInstance(ILogger logger, string plugin, double loadLimitMs, double timeoutMs);
}
