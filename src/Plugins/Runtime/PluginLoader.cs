using System.Collections.Concurrent;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// Spec §7.1 loading: null/empty directory → no plugins; missing → warning, no plugins; not a directory or unreadable →
/// <see cref="PluginDirectoryException"/> (the host must not start). Regular <c>*.wasm</c> entries, non-recursive, in
/// lexical (ordinal) file-name order; a file that cannot be loaded is skipped with an error.
/// </summary>
public static class PluginLoader
{
    /// <param name="skipComponents">The proplet loads component plugins itself (<see cref="ComponentFiles"/>); elsewhere a
    /// component is a file that cannot be loaded.</param>
    public static PluginSet Load(PluginRuntime runtime, string? directory, ConcurrentDictionary<string, PluginCounters> counters, bool skipComponents = false)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(counters);
        if (string.IsNullOrEmpty(directory))
        {
            return PluginSet.Empty;
        }

        if (File.Exists(directory))
        {
            throw new PluginDirectoryException($"plugin directory {directory} is not a directory");
        }

        if (!Directory.Exists(directory))
        {
            PluginLog.DirectoryMissing(runtime.Logger, directory);
            return PluginSet.Empty;
        }

        string[] files;
        try
        {
            files = [.. new DirectoryInfo(directory).EnumerateFiles("*", SearchOption.TopDirectoryOnly)
                .Where(f => (f.Name.EndsWith(".wasm", StringComparison.Ordinal) && !f.Attributes.HasFlag(FileAttributes.ReparsePoint)) || IsRegularLink(f))
                .Select(f => f.FullName)
                .Order(StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.SecurityException)
        {
            throw new PluginDirectoryException($"plugin directory {directory} cannot be read: {e.Message}", e);
        }

        var loaded = new List<LoadedPlugin>();
        var skipped = new List<PluginLoadError>();
        foreach (var file in files)
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (skipComponents && IsComponent(file))
            {
                continue;
            }

            try
            {
                var plugin = LoadedPlugin.Load(runtime, file, counters.GetOrAdd(name, _ => new PluginCounters()));
                loaded.Add(plugin);
                PluginLog.Loaded(runtime.Logger, name, file, plugin.Hash[..12], string.Join(',', PluginHookNames.Names(plugin.Hooks)));
                if (!plugin.Active)
                {
                    PluginLog.Inactive(runtime.Logger, name);
                }
                else if (!plugin.Has(PluginHooks.Authorize))
                {
                    PluginLog.NoAuthorize(runtime.Logger, name);
                }
            }
            catch (PluginLoadException e)
            {
                PluginLog.Skipped(runtime.Logger, name, file, e.Message);
                skipped.Add(new PluginLoadError(name, file, e.Message));
            }
        }

        return new PluginSet(loaded, skipped);
    }

    /// <summary>The <c>*.wasm</c> files of <paramref name="directory"/> that are components, in file-name order (none when it is missing).</summary>
    public static IReadOnlyList<string> ComponentFiles(string? directory) =>
        string.IsNullOrEmpty(directory) || !Directory.Exists(directory)
            ? []
            : [.. Directory.EnumerateFiles(directory, "*.wasm", SearchOption.TopDirectoryOnly).Where(IsComponent).Order(StringComparer.Ordinal)];

    private static bool IsComponent(string file)
    {
        try
        {
            using var stream = File.OpenRead(file);
            Span<byte> header = stackalloc byte[8];
            return stream.ReadAtLeast(header, 8, throwOnEndOfStream: false) == 8 && Propeller.WasmHost.Components.WasmBinary.IsComponent(header);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>A symlink to a regular file counts as a regular entry (what os.ReadDir + ReadFile sees).</summary>
    private static bool IsRegularLink(FileInfo file) =>
        file.Name.EndsWith(".wasm", StringComparison.Ordinal) && file.LinkTarget is not null && file.ResolveLinkTarget(true) is FileInfo { Exists: true };
}

/// <summary>The plugin directory exists but cannot be used: a startup error.</summary>
public sealed class PluginDirectoryException : Exception
{
    public PluginDirectoryException()
    {
    }

    public PluginDirectoryException(string message)
        : base(message)
    {
    }

    public PluginDirectoryException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
