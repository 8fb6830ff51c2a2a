namespace Propeller.Manager;

/// <summary>
/// Manager behaviour settings. <paramref name="LivenessWindow"/>: a proplet is alive while its last heartbeat is
/// younger than this (MANAGER_PROPLET_LIVENESS_WINDOW seconds, default 30 = 3 × the proplet's 10 s heartbeat; the
/// original's 10 s window made healthy proplets flap, spec §6.3).
/// </summary>
internal sealed record ManagerOptions(TimeSpan LivenessWindow);
