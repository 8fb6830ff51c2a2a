using System.Globalization;

namespace Propeller.Bench.Support;

/// <summary>
/// CPU time of processes from /proc (user + system ticks, USER_HZ = 100), so a benchmark can say what its own stack
/// spent (this process, PostgreSQL's backends, the broker) apart from whatever else the machine runs.
/// </summary>
internal static class ProcCpu
{
    /// <summary>CPU milliseconds process <paramref name="pid"/> has used so far; 0 when it is gone or not readable.</summary>
    public static double Ms(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // fields[11], fields[12]: utime, stime (fields 14 and 15 of proc(5), counted from the state field).
            return (double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture)) * 1000 / 100;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>
    /// CPU milliseconds used so far by every live process named <paramref name="name"/> (its comm), keyed by pid, so that
    /// two snapshots can be subtracted per process (a process that ends between them is not counted).
    /// </summary>
    public static Dictionary<int, double> ByName(string name)
    {
        var found = new Dictionary<int, double>();
        if (!Directory.Exists("/proc"))
        {
            return found;
        }

        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                if (string.Equals(File.ReadAllText(Path.Combine(dir, "comm")).TrimEnd(), name, StringComparison.Ordinal))
                {
                    found[pid] = Ms(pid);
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return found;
    }

    /// <summary>What the processes of <paramref name="after"/> used since <paramref name="before"/> (new ones count from 0).</summary>
    public static double Since(Dictionary<int, double> before, Dictionary<int, double> after) =>
        after.Sum(p => Math.Max(0, p.Value - before.GetValueOrDefault(p.Key)));
}
