namespace Propeller.Wasm;

/// <summary>An import could not be resolved, or resolved to an object of the wrong type.</summary>
public sealed class LinkException : WasmException
{
    public LinkException()
    {
    }

    public LinkException(string message)
        : base(message)
    {
    }

    public LinkException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
