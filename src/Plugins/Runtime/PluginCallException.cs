namespace Propeller.Plugins.Runtime;

/// <summary>Why a plugin call failed; the metrics' <c>failure</c> tag.</summary>
public enum PluginFailureKind
{
    Trap,
    Timeout,
    OutOfFuel,
    MemoryLimit,
    Malformed,
    Abi,
}

/// <summary>A plugin call that trapped, ran out of a limit or answered something the host cannot read.</summary>
public sealed class PluginCallException : Exception
{
    public PluginCallException()
        : this(PluginFailureKind.Trap, "plugin call failed")
    {
    }

    public PluginCallException(string message)
        : this(PluginFailureKind.Trap, message)
    {
    }

    public PluginCallException(string message, Exception innerException)
        : base(message, innerException)
    {
        Kind = PluginFailureKind.Trap;
    }

    public PluginCallException(PluginFailureKind kind, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Kind = kind;
    }

    public PluginFailureKind Kind { get; }
}
