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
    /// <param name="cancellationToken">Ends a start function that runs or sleeps: the load throws
    /// <see cref="OperationCanceledException"/> and the plugins loaded so far are retired.</param>
    public static PluginSet Load(PluginRuntime runtime, string? directory, ConcurrentDictionary<string, PluginCounters> counters, bool skipComponents = false, CancellationToken cancellationToken = default)
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

        List<FileInfo> entries;
        try
        {
            entries = [.. new DirectoryInfo(directory).EnumerateFiles("*.wasm", SearchOption.TopDirectoryOnly)
                .Where(f => f.Name.EndsWith(".wasm", StringComparison.Ordinal))
                .OrderBy(f => f.Name, StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.SecurityException)
        {
            throw new PluginDirectoryException($"plugin directory {directory} cannot be read: {e.Message}", e);
        }

        // Only the directory itself is fatal (spec §7.1): an entry whose link cannot be followed (a loop, a missing target)
        // or that was renamed away while it was looked at is a file that cannot be loaded. Before, the first threw out of
        // the enumeration and the manager would not start (or a reload failed), and a dangling link vanished silently.
        var files = new List<string>();
        var loaded = new List<LoadedPlugin>();
        var skipped = new List<PluginLoadError>();
        foreach (var entry in entries)
        {
            string? problem;
            try
            {
                problem = NotARegularFile(entry);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.SecurityException)
            {
                problem = e.Message;
            }

            if (problem is null)
            {
                files.Add(entry.FullName);
            }
            else
            {
                var name = Path.GetFileNameWithoutExtension(entry.Name);
                PluginLog.Skipped(runtime.Logger, name, entry.FullName, problem);
                skipped.Add(new PluginLoadError(name, entry.FullName, problem));
            }
        }

        foreach (var file in files)
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (skipComponents && IsComponent(file))
            {
                continue;
            }

            try
            {
                var plugin = LoadedPlugin.Load(runtime, file, counters.GetOrAdd(name, _ => new PluginCounters()), cancellationToken);
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
            catch (OperationCanceledException)
            {
                foreach (var plugin in loaded)
                {
                    plugin.Retire();
                }

                throw;
            }
        }

        return new PluginSet(loaded, [.. skipped.OrderBy(s => s.File, StringComparer.Ordinal)]);
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

    /// <summary>
    /// Null for a regular file or a symlink to one (what os.ReadDir + ReadFile sees), else why the entry is not loaded.
    /// Throws <see cref="IOException"/> when the link cannot be followed (a loop) or the entry is gone.
    /// </summary>
    private static string? NotARegularFile(FileInfo file)
    {
        if (file.LinkTarget is null)
        {
            return file.Exists ? null : "the file is gone";
        }

        return file.ResolveLinkTarget(true) switch
        {
            FileInfo { Exists: true } => null,
            { } target => $"symbolic link to {target.FullName}, which is not a regular file",
            null => "symbolic link that cannot be followed",
        };
    }
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
