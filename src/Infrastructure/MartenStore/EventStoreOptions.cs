namespace Propeller.Infrastructure.MartenStore;

/// <summary>Settings of the event store on Marten (section "EventStore", ADR 0010).</summary>
public sealed class EventStoreOptions
{
    public const string Section = "EventStore";

    /// <summary>Npgsql connection string. Hosts build it from MANAGER_POSTGRES_* (see docs/operations.md).</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>Where Marten's tables (and the outbox, inbox and telemetry tables) live; one schema per test class in tests.</summary>
    public string Schema { get; set; } = "propeller";

    /// <summary>Longest accepted stream id, in characters.</summary>
    public int MaxStreamIdLength { get; set; } = 200;

    /// <summary>Largest accepted serialised event body, in bytes.</summary>
    public int MaxEventBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>How often to try reaching PostgreSQL at startup before failing.</summary>
    public int StartupAttempts { get; set; } = 10;

    /// <summary>First delay between startup attempts; doubles each time, capped at 10 s.</summary>
    public TimeSpan StartupRetryDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The name of the setting that holds the database address, for error messages.</summary>
    public string ConnectionSettingName { get; set; } = "MANAGER_POSTGRES_HOST/MANAGER_POSTGRES_PORT";
}
