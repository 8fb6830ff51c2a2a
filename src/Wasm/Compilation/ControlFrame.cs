using System.Reflection.Emit;

namespace Propeller.Wasm.Compilation;

/// <summary>
/// One structured-control frame (function body, block, loop or if) as seen by the validator and the code generator.
/// <see cref="Unreachable"/> is the validator's polymorphic-stack state; <see cref="CodeDead"/> additionally covers code
/// after an `end` that nothing reaches, where no IL may be emitted. <see cref="Dead"/> frames were opened in dead code.
/// </summary>
internal sealed class ControlFrame
{
    public required byte Opcode { get; init; }

    public required ValueKind[] Params { get; init; }

    public required ValueKind[] Results { get; init; }

    public required int Height { get; init; }

    public required bool Dead { get; init; }

    public bool Unreachable { get; set; }

    public bool CodeDead { get; set; }

    public bool HasElse { get; set; }

    /// <summary>Some branch targets the end label.</summary>
    public bool Targeted { get; set; }

    public Label EndLabel { get; init; }

    /// <summary>Loop: the header. If: the start of the else arm.</summary>
    public Label StartLabel { get; init; }

    public ValueKind[] LabelTypes => Opcode == 0x03 ? Params : Results;

    public bool Live => !Dead && !CodeDead;
}
