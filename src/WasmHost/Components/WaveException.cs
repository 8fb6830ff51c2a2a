namespace Propeller.WasmHost.Components;

/// <summary>WAVE text that does not fit the expected type; the message names the problem and the position (0-based).</summary>
public sealed class WaveException : FormatException
{
    public WaveException()
    {
    }

    public WaveException(string message)
        : base(message)
    {
    }

    public WaveException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
