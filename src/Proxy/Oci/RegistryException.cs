namespace Propeller.Proxy.Oci;

/// <summary>An image could not be pulled (or pushed); the message is what the proplet's task error says.</summary>
public sealed class RegistryException : Exception
{
    public RegistryException()
    {
    }

    public RegistryException(string message)
        : base(message)
    {
    }

    public RegistryException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
