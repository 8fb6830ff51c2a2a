namespace Propeller.Edge.Execution;

/// <summary>
/// A latent task's binary made ready for invocations (spec §2.10): <see cref="Prepared"/> is the runtime's own handle
/// (a compiled component in-process), or <see cref="Error"/> says why it cannot be.
/// </summary>
public sealed record LatentPreparation(object? Prepared, bool IsHttpProxy, string? Error)
{
    public static LatentPreparation Failed(string error) => new(null, false, error);
}
