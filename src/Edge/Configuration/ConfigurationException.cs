namespace Propeller.Edge.Configuration;

/// <summary>A setting is missing or malformed; the message names the variable or file line and what was expected.</summary>
public sealed class ConfigurationException : Exception
{
    public ConfigurationException()
    {
    }

    public ConfigurationException(string message)
        : base(message)
    {
    }

    public ConfigurationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
