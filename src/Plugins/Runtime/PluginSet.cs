namespace Propeller.Plugins.Runtime;

/// <summary>An immutable set of loaded plugins in chain order (lexical file-name order), plus the files that were skipped.</summary>
public sealed class PluginSet
{
    public static PluginSet Empty { get; } = new([], []);

    public PluginSet(IReadOnlyList<LoadedPlugin> plugins, IReadOnlyList<PluginLoadError> skipped)
    {
        All = plugins;
        Skipped = skipped;
        Active = [.. plugins.Where(p => p.Active)];
    }

    /// <summary>Every loaded plugin, active or not.</summary>
    public IReadOnlyList<LoadedPlugin> All { get; }

    /// <summary>The chain: active plugins in order.</summary>
    public IReadOnlyList<LoadedPlugin> Active { get; }

    public IReadOnlyList<PluginLoadError> Skipped { get; }

    public LoadedPlugin? Find(string name) => All.FirstOrDefault(p => p.Name == name);
}

/// <summary>A plugin file that was skipped, and why.</summary>
public sealed record PluginLoadError(string Plugin, string File, string Error);
