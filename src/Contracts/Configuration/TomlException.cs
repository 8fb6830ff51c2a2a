namespace Propeller.Contracts.Configuration;

/// <summary>A config.toml that cannot be read or is not the TOML subset <see cref="TomlDocument"/> reads; the message
/// names the file and line.</summary>
public sealed class TomlException : FormatException
{
    public TomlException()
    {
    }

    public TomlException(string message)
        : base(message)
    {
    }

    public TomlException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
