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

    /// <summary>Reads /proc and /sys under <paramref name="root"/> instead of /, for tests. The CPU counters are read
    /// here, as the baseline of the first <see cref="SystemCpuPercent"/>.</summary>
    internal SystemSampler(string root)
    {
        _root = root;
        _lastCpu = ReadProcStat(root);
    }

    /// <summary>
    /// System-wide CPU usage 0–100 since the previous call, the first since construction (0 when /proc/stat could not
    /// be read then). It compared the first with zero counters, which gave the average since boot where the original
    /// sends ~0 (spec §1.7). The deltas are signed: a counter that goes back (iowait can) gives 0 for that interval,
    /// where the unsigned difference wrapped round.
    /// </summary>
    public double SystemCpuPercent()
    {
        var now = ReadProcStat(_root);
        if (now is null)
        {
            return 0;
        }

        lock (_lock)
        {
            var last = _lastCpu;
            _lastCpu = now;
            if (last is not { } l)
            {
                return 0;
            }

            var total = (double)now.Value.Total - l.Total;
            var busy = (double)now.Value.Busy - l.Busy;
            return total <= 0 || busy <= 0 ? 0 : Math.Clamp(100.0 * busy / total, 0, 100);
        }
    }

    /// <summary>The memory cgroup's usage: v2 memory.current, else v1 memory.usage_in_bytes (see
    /// <see cref="CgroupNumber"/>); null when neither exists.</summary>
    public static ulong? ContainerUsageBytes() => ContainerUsageBytes(HostRoot);

    internal static ulong? ContainerUsageBytes(string root) => CgroupNumber(root, "memory.current", "memory.usage_in_bytes");

    /// <summary>
    /// The memory cgroup's limit: v2 memory.max ("max" = none), else v1 memory.limit_in_bytes; null when unlimited or
    /// unknown. v1 writes "no limit" as the largest page-aligned long, which depends on the page size
    /// (0x7FFFFFFFFFFFF000 with 4 KiB pages, 0x7FFFFFFFFFFF0000 with arm64's 64 KiB ones, reported as a 9.2 EB limit),
    /// so anything within 1 MiB of <see cref="long.MaxValue"/> is no limit.
    /// </summary>
    public static ulong? ContainerLimitBytes() => ContainerLimitBytes(HostRoot);

    internal static ulong? ContainerLimitBytes(string root)
    {
        var limit = CgroupNumber(root, "memory.max", "memory.limit_in_bytes");
        return limit is 0 or >= 0x7FFF_FFFF_FFF0_0000 ? null : limit;
    }

    /// <summary>
    /// The machine's memory as this process may use it: the smaller of /proc/meminfo's MemTotal and the memory
    /// cgroup's limit. It was the GC's TotalAvailableMemoryBytes, which in a container is 75 % of the limit (the GC's
    /// default heap hard limit), so discovery under-reported what a proplet could give its tasks. Without
    /// /proc/meminfo (not Linux) the GC's figure stands.
    /// </summary>
    public static ulong TotalMemoryBytes() => TotalMemoryBytes(HostRoot);

    internal static ulong TotalMemoryBytes(string root)
    {
        var memTotal = ReadLines(Path.Combine(root, "proc/meminfo"))
            .Where(line => line.StartsWith("MemTotal:", StringComparison.Ordinal))
            .Select(line => ParseTail(line.EndsWith(" kB", StringComparison.Ordinal) ? line[..^3] : line) * 1024)
            .FirstOrDefault();
        if (memTotal == 0)
        {
            return (ulong)Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        }

        return ContainerLimitBytes(root) is { } limit ? Math.Min(memTotal, limit) : memTotal;
    }

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

    /// <summary>
    /// A number from this process's memory cgroup: cgroup v2's <paramref name="v2File"/>, else v1's
    /// <paramref name="v1File"/>. The cgroup is the one /proc/self/cgroup names ("0::/path" for v2, the memory line for
    /// v1); without a cgroup namespace (a systemd service, a container sharing the host's) that is not the mount's root,
    /// whose files are the whole machine's or absent. The root's file is the fallback (a cgroup namespace shows "/").
    /// </summary>
    private static ulong? CgroupNumber(string root, string v2File, string v1File)
    {
        string? v2 = null, v1 = null;
        foreach (var line in ReadLines(Path.Combine(root, "proc/self/cgroup")))
        {
            var parts = line.Split(':', 3);
            if (parts.Length != 3 || !parts[2].StartsWith('/'))
            {
                continue;
            }

            if (parts[0] == "0" && parts[1].Length == 0)
            {
                v2 = parts[2];
            }
            else if (parts[1].Split(',').Contains("memory"))
            {
                v1 = parts[2];
            }
        }

        var v2Mount = Path.Combine(root, "sys/fs/cgroup");
        var v1Mount = Path.Combine(root, "sys/fs/cgroup/memory");
        return (v2 is { Length: > 1 } ? ReadNumber(Path.Join(v2Mount, v2, v2File)) : null)
            ?? ReadNumber(Path.Combine(v2Mount, v2File))
            ?? (v1 is { Length: > 1 } ? ReadNumber(Path.Join(v1Mount, v1, v1File)) : null)
            ?? ReadNumber(Path.Combine(v1Mount, v1File));
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
