namespace Propeller.Plugins.Runtime;

/// <summary>A plugin file that could not be loaded; the loader skips it and reports the reason.</summary>
public sealed class PluginLoadException : Exception
{
    public PluginLoadException()
    {
    }

    public PluginLoadException(string message)
        : base(message)
    {
    }

    public PluginLoadException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public PluginLoadException(string plugin, string file, string reason, Exception? innerException = null)
        : base(reason, innerException)
    {
        Plugin = plugin;
        File = file;
    }

    public string Plugin { get; } = "";

    public string File { get; } = "";
}
