using System.Diagnostics;
using System.Globalization;

namespace Propeller.Edge.Monitoring;

/// <summary>
/// Reads process and machine figures for the metrics messages: CPU times and RSS through <see cref="Process"/>;
/// system-wide CPU usage, disk I/O, open descriptors and cgroup memory from /proc and /sys on Linux (0 or absent
/// elsewhere). Every read is best effort: a missing or unreadable file gives 0 / null, never an exception.
/// </summary>
public sealed class SystemSampler
{
    private const string HostRoot = "/";

    private readonly Lock _lock = new();
    private readonly string _root;
    private (ulong Busy, ulong Total)? _lastCpu;

    public SystemSampler()
        : this(HostRoot)
    {
    }

    /// <summary>Reads /proc and /sys under <paramref name="root"/> instead of /, for tests.</summary>
    internal SystemSampler(string root) => _root = root;

    /// <summary>System-wide CPU usage 0–100 since the previous call (the first call compares with boot, like sysinfo's ~0).</summary>
    public double SystemCpuPercent()
    {
        var now = ReadProcStat(_root);
        if (now is null)
        {
            return 0;
        }

        lock (_lock)
        {
            var last = _lastCpu ?? (0, 0);
            _lastCpu = now;
            var total = now.Value.Total - last.Total;
            return total == 0 ? 0 : Math.Clamp(100.0 * (now.Value.Busy - last.Busy) / total, 0, 100);
        }
    }

    /// <summary>cgroup v2 memory.current (else v1 usage_in_bytes); null when neither exists.</summary>
    public static ulong? ContainerUsageBytes() => ContainerUsageBytes(HostRoot);

    internal static ulong? ContainerUsageBytes(string root) =>
        ReadNumber(Path.Combine(root, "sys/fs/cgroup/memory.current")) ?? ReadNumber(Path.Combine(root, "sys/fs/cgroup/memory/memory.usage_in_bytes"));

    /// <summary>cgroup v2 memory.max ("max" = none), else v1 limit_in_bytes; null when unlimited or unknown.</summary>
    public static ulong? ContainerLimitBytes() => ContainerLimitBytes(HostRoot);

    internal static ulong? ContainerLimitBytes(string root)
    {
        var limit = ReadNumber(Path.Combine(root, "sys/fs/cgroup/memory.max")) ?? ReadNumber(Path.Combine(root, "sys/fs/cgroup/memory/memory.limit_in_bytes"));
        return limit is 0 or >= 0x7FFF_FFFF_FFFF_F000 ? null : limit;
    }

    public static ulong TotalMemoryBytes() => (ulong)Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);

    /// <summary>Cumulative bytes read and written by <paramref name="pid"/> (/proc/PID/io).</summary>
    public static (ulong Read, ulong Written) DiskIo(int pid)
    {
        ulong read = 0, written = 0;
        foreach (var line in ReadLines($"/proc/{pid}/io"))
        {
            if (line.StartsWith("read_bytes:", StringComparison.Ordinal))
            {
                read = ParseTail(line);
            }
            else if (line.StartsWith("write_bytes:", StringComparison.Ordinal))
            {
                written = ParseTail(line);
            }
        }

        return (read, written);
    }

    public static uint FileDescriptors(int pid)
    {
        try
        {
            return (uint)Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Count();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    private static (ulong Busy, ulong Total)? ReadProcStat(string root)
    {
        var first = ReadLines(Path.Combine(root, "proc/stat")).FirstOrDefault();
        if (first is null || !first.StartsWith("cpu ", StringComparison.Ordinal))
        {
            return null;
        }

        var fields = first[4..].Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(f => ulong.TryParse(f, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0).ToArray();
        if (fields.Length < 4)
        {
            return null;
        }

        var total = fields.Take(8).Aggregate(0UL, (a, b) => a + b);
        var idle = fields[3] + (fields.Length > 4 ? fields[4] : 0);
        return (total - idle, total);
    }

    private static ulong ParseTail(string line) =>
        ulong.TryParse(line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0;

    private static ulong? ReadNumber(string path)
    {
        var text = ReadLines(path).FirstOrDefault()?.Trim();
        return ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    private static string[] ReadLines(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllLines(path) : [];
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }
}
