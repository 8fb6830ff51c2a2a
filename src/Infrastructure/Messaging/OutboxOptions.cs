namespace Propeller.Infrastructure.Messaging;

/// <summary>Settings of the outbox relay (section "Outbox").</summary>
public sealed class OutboxOptions
{
    public const string Section = "Outbox";

    /// <summary>Rows claimed per round.</summary>
    public int BatchSize { get; set; } = 100;

    /// <summary>Wait between rounds when nothing is due.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>How long a claim lasts: a relay that dies mid-batch releases its rows after this (any node retries them).</summary>
    public TimeSpan ClaimDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Attempts before a message is dead-lettered (kept, with its last error, never silently dropped).</summary>
    public int MaxAttempts { get; set; } = 10;

    /// <summary>First retry delay; doubles per attempt up to <see cref="MaxRetryDelay"/>, with jitter.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>While the relay runs, rows younger than this are left to the after-commit fast path of the node that
    /// wrote them; after it, the relay sends whatever is still unsent (fast path failed, or the node died).</summary>
    public TimeSpan FastPathGrace { get; set; } = TimeSpan.FromSeconds(2);
}
