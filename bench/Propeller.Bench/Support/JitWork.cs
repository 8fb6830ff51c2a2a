using System.Globalization;
using System.Runtime;

namespace Propeller.Bench.Support;

/// <summary>
/// What the JIT did in this process so far (methods compiled, time spent compiling, on every thread), so a benchmark can
/// print how much of its measured window went to compiling rather than to the work: a window that still tiers up
/// is not the steady state of a long-running process.
/// </summary>
internal readonly record struct JitWork(long Methods, TimeSpan Time)
{
    public static JitWork Now() => new(JitInfo.GetCompiledMethodCount(), JitInfo.GetCompilationTime());

    public static JitWork operator -(JitWork after, JitWork before) => new(after.Methods - before.Methods, after.Time - before.Time);

    public override string ToString() => Format("");

    /// <summary>The two figures as benchmark fields, each name prefixed with <paramref name="prefix"/> (e.g. "manager_").</summary>
    public string Format(string prefix) =>
        string.Create(CultureInfo.InvariantCulture, $"{prefix}jit_methods={Methods} {prefix}jit_ms={Time.TotalMilliseconds:F0}");
}
