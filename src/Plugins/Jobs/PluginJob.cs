namespace Propeller.Plugins.Jobs;

/// <summary>A job row as the worker sees it (the payload is JSON text, or null).</summary>
public sealed record PluginJob(
    Guid Id,
    string Plugin,
    string PluginHash,
    string Type,
    string UserType,
    string? Payload,
    string? EnqueuedBy,
    int Attempts,
    int MaxRetry,
    string State,
    string? LastError);

/// <summary>One audit row of a job (table plugin_job_history).</summary>
public sealed record PluginJobEvent(Guid JobId, DateTimeOffset At, string Event, int Attempt, string? Detail);
