namespace Propeller.Wasm;

/// <summary>The kind of a rejected module.</summary>
public enum ModuleErrorKind
{
    /// <summary>The bytes are not a well-formed binary module.</summary>
    Malformed,

    /// <summary>The module decodes but does not validate.</summary>
    Invalid,

    /// <summary>The module uses a feature this engine does not support yet (for example SIMD).</summary>
    Unsupported,
}

/// <summary>A module was rejected while decoding or validating; <see cref="Offset"/> is the byte offset of the problem.</summary>
public sealed class ModuleException : WasmException
{
    public ModuleException()
    {
        Reason = string.Empty;
    }

    public ModuleException(string message)
        : base(message)
    {
        Reason = message;
    }

    public ModuleException(string message, Exception innerException)
        : base(message, innerException)
    {
        Reason = message;
    }

    public ModuleException(ModuleErrorKind kind, string reason, long offset)
        : base($"{KindText(kind)} module at byte offset {offset} (0x{offset:x}): {reason}")
    {
        Kind = kind;
        Reason = reason;
        Offset = offset;
    }

    public ModuleErrorKind Kind { get; }

    /// <summary>The reason alone, in the spec's wording (for example "type mismatch").</summary>
    public string Reason { get; }

    public long Offset { get; }

    private static string KindText(ModuleErrorKind kind) => kind switch
    {
        ModuleErrorKind.Malformed => "malformed",
        ModuleErrorKind.Invalid => "invalid",
        _ => "unsupported",
    };
}
