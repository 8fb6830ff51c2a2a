namespace Propeller.Wasm;

/// <summary>Base class of every error the engine reports.</summary>
public class WasmException : Exception
{
    public WasmException()
    {
    }

    public WasmException(string message)
        : base(message)
    {
    }

    public WasmException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
