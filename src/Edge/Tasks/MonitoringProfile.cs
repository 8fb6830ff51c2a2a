using System.Text.Json;

namespace Propeller.Edge.Tasks;

/// <summary>Per-task monitoring (spec §4.4). When a start carries the object, all ten keys are required.</summary>
public sealed record MonitoringProfile(
    bool Enabled,
    TimeSpan Interval,
    bool CollectCpu,
    bool CollectMemory,
    bool CollectDiskIo,
    bool CollectThreads,
    bool CollectFileDescriptors,
    bool ExportToMqtt,
    bool RetainHistory,
    int HistorySize)
{
    public static MonitoringProfile Standard { get; } = new(true, TimeSpan.FromSeconds(10), true, true, true, true, true, true, true, 100);

    public static MonitoringProfile LongRunningDaemon { get; } = new(true, TimeSpan.FromSeconds(120), true, true, true, true, true, true, true, 500);

    /// <summary>The request's profile, or the default for daemon or normal tasks. Throws <see cref="FormatException"/>
    /// naming the first missing or mistyped key.</summary>
    public static MonitoringProfile From(JsonElement? element, bool daemon)
    {
        if (element is not { } e || e.ValueKind == JsonValueKind.Null)
        {
            return daemon ? LongRunningDaemon : Standard;
        }

        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException("monitoring_profile must be an object");
        }

        bool Flag(string key) => e.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? v.GetBoolean()
            : throw new FormatException($"monitoring_profile.{key} must be a boolean");
        ulong Number(string key) => e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetUInt64(out var n)
            ? n
            : throw new FormatException($"monitoring_profile.{key} must be a non-negative integer");

        // Seconds on the wire; a Go client's time.Duration arrives in nanoseconds (10 s = 10000000000, spec §4.4), and
        // nobody means 31 years, so values from 1e9 up are read as nanoseconds. 0 (which only broke the original's
        // monitor) turns monitoring off for the task instead of failing it.
        var raw = Number("interval");
        // Either way at most TaskLimits.MaxWait (a delay cannot be longer), so a monitor never fails on its own interval.
        var seconds = raw >= 1_000_000_000 ? Math.Max(1, raw / 1_000_000_000) : raw;
        var interval = TimeSpan.FromSeconds(Math.Min(seconds, (ulong)TaskLimits.MaxWait.TotalSeconds));
        return new MonitoringProfile(
            Flag("enabled") && raw > 0,
            raw == 0 ? TimeSpan.FromSeconds(1) : interval,
            Flag("collect_cpu"),
            Flag("collect_memory"),
            Flag("collect_disk_io"),
            Flag("collect_threads"),
            Flag("collect_file_descriptors"),
            Flag("export_to_mqtt"),
            Flag("retain_history"),
            // The cap bounds a task's memory (a sample is about 100 bytes: ~10 MB at most); the time per sample does not
            // grow with it (Monitoring.SampleHistory keeps running aggregates).
            (int)Math.Min(Number("history_size"), 100_000));
    }
}
