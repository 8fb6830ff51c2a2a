namespace Propeller.Proxy.Configuration;

/// <summary>A PROXY_* setting or the config.toml fallback is missing or malformed; the message names the variable.</summary>
public sealed class ProxyConfigurationException : Exception
{
    public ProxyConfigurationException()
    {
    }

    public ProxyConfigurationException(string message)
        : base(message)
    {
    }

    public ProxyConfigurationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
