namespace Propeller.Plugins.Runtime;

/// <summary>
/// An immutable set of loaded plugins in chain order (lexical file-name order), plus the files that were skipped and the
/// files that failed on a reload whose previous version was kept (<see cref="Kept"/>).
/// </summary>
public sealed class PluginSet
{
    public static PluginSet Empty { get; } = new([], []);

    public PluginSet(IReadOnlyList<LoadedPlugin> plugins, IReadOnlyList<PluginLoadError> skipped, IReadOnlyList<PluginLoadError>? kept = null)
    {
        All = plugins;
        Skipped = skipped;
        Kept = kept ?? [];
        Active = [.. plugins.Where(p => p.Active)];
    }

    /// <summary>Every loaded plugin, active or not.</summary>
    public IReadOnlyList<LoadedPlugin> All { get; }

    /// <summary>The chain: active plugins in order.</summary>
    public IReadOnlyList<LoadedPlugin> Active { get; }

    public IReadOnlyList<PluginLoadError> Skipped { get; }

    /// <summary>
    /// Files that failed to load on the reload that made this set while a version of the same plugin was loaded: that
    /// version is in <see cref="All"/> still (its hash says which), and the error says why the new file was not taken.
    /// </summary>
    public IReadOnlyList<PluginLoadError> Kept { get; }

    public LoadedPlugin? Find(string name) => All.FirstOrDefault(p => p.Name == name);
}

/// <summary>A plugin file that was skipped, and why.</summary>
public sealed record PluginLoadError(string Plugin, string File, string Error);
