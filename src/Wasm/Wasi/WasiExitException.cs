namespace Propeller.Wasm.Wasi;

/// <summary>The guest called proc_exit: not a trap, just the end of the program with <see cref="ExitCode"/>.</summary>
public sealed class WasiExitException : WasmException
{
    public WasiExitException()
        : this(0)
    {
    }

    public WasiExitException(int exitCode)
        : base($"exit with code {exitCode}")
    {
        ExitCode = exitCode;
    }

    public WasiExitException(string message)
        : base(message)
    {
    }

    public WasiExitException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public int ExitCode { get; }
}
