using Propeller.Domain.Common;

namespace Propeller.Domain.Proplets;

/// <summary>What a proplet says about itself at discovery (spec propeller-manager.md §6.2).</summary>
public sealed record PropletMetadata
{
    public static PropletMetadata Empty { get; } = new();

    public string? Description { get; init; }

    public EquatableArray<string> Tags { get; init; } = EquatableArray<string>.Empty;

    public string? Location { get; init; }

    public string? Ip { get; init; }

    public string? Environment { get; init; }

    public string? Os { get; init; }

    public string? Hostname { get; init; }

    public string? CpuArch { get; init; }

    /// <summary>Parsed as an unsigned integer (the original lost it to a float conversion, §9.5).</summary>
    public ulong TotalMemoryBytes { get; init; }

    public string? PropletVersion { get; init; }

    public string? WasmRuntime { get; init; }
}
