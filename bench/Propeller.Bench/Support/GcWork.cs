using System.Globalization;

namespace Propeller.Bench.Support;

/// <summary>
/// What the garbage collector did in this process between two readings: bytes allocated, collections by generation and
/// the time the process was paused for them (counts the machine's speed does not move, except the pause).
/// </summary>
internal readonly record struct GcWork(long Allocated, int Gen0, int Gen1, int Gen2, TimeSpan Paused)
{
    public static GcWork Now() => new(
        GC.GetTotalAllocatedBytes(precise: false), GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration());

    public static GcWork operator -(GcWork after, GcWork before) => new(
        after.Allocated - before.Allocated, after.Gen0 - before.Gen0, after.Gen1 - before.Gen1, after.Gen2 - before.Gen2, after.Paused - before.Paused);

    /// <summary>Allocation per unit of work (a task), the window's collections (gen 0/1/2) and pause time, and the heap
    /// and working set at the end, as benchmark fields.</summary>
    public string PerUnit(long units) => string.Create(
        CultureInfo.InvariantCulture,
        $"alloc_kb_per_task={Allocated / 1024.0 / Math.Max(1, units):F1} gc_collections={Gen0}/{Gen1}/{Gen2} gc_pause_ms={Paused.TotalMilliseconds:F0} heap_mb={GC.GetGCMemoryInfo().HeapSizeBytes / 1048576.0:F0} working_set_mb={Environment.WorkingSet / 1048576.0:F0}");
}
