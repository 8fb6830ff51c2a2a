namespace Propeller.Infrastructure.Mqtt;

/// <summary>One invocation of a latent task: where it ran, and its results or error (a proplet's, or a timeout).</summary>
public sealed record InvocationOutcome(string InvocationId, string? PropletId, string? Results, string? Error);
