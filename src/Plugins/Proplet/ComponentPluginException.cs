namespace Propeller.Plugins.Proplet;

/// <summary>A component plugin's call failed (trap, fuel, memory or time limit); the message names the plugin, hook and cause.</summary>
public sealed class ComponentPluginException : Exception
{
    public ComponentPluginException()
    {
    }

    public ComponentPluginException(string message)
        : base(message)
    {
    }

    public ComponentPluginException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
