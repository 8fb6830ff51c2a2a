using System.Diagnostics;

namespace Propeller.Wasm;

/// <summary>Guest code trapped. <see cref="Message"/> starts with the spec's text for the trap.</summary>
public sealed class TrapException : WasmException
{
    private string? _functionName;
    private List<string> _frames = [];
    private bool _located;

    public TrapException()
        : this(TrapCode.Undefined, "trap")
    {
    }

    public TrapException(string message)
        : this(TrapCode.Undefined, message)
    {
    }

    public TrapException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = TrapCode.Undefined;
        Text = message;
    }

    public TrapException(TrapCode code, string text)
        : base(text)
    {
        Code = code;
        Text = text;
    }

    public TrapCode Code { get; }

    /// <summary>The spec's trap text, for example "integer divide by zero".</summary>
    public string Text { get; }

    /// <summary>The wasm function that trapped (from the name section when present), or null when unknown.</summary>
    public string? FunctionName
    {
        get
        {
            Locate();
            return _functionName;
        }
    }

    /// <summary>The wasm call stack at the trap, innermost first (function names from the name section when present).</summary>
    public IReadOnlyList<string> Frames
    {
        get
        {
            Locate();
            return _frames;
        }
    }

    public override string Message => FunctionName is { } name ? $"{Text} (in wasm function {name})" : Text;

    /// <summary>Finds the innermost compiled wasm frame; compiled functions live in dynamic assemblies named "wasm:".</summary>
    private void Locate()
    {
        if (_located)
        {
            return;
        }

        _located = true;
        var frames = new List<string>();
        foreach (var frame in new StackTrace(this, false).GetFrames())
        {
            var method = frame.GetMethod();
            var assembly = method?.DeclaringType?.Assembly.GetName().Name;
            if (assembly is not null && assembly.StartsWith("wasm:", StringComparison.Ordinal)
                && !assembly.StartsWith("wasm:host:", StringComparison.Ordinal))
            {
                frames.Add(method!.Name);
            }
        }

        _frames = frames;
        _functionName = frames.Count > 0 ? frames[0] : null;
    }
}
