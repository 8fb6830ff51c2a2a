namespace Propeller.Edge.Tests;

/// <summary>Time measured for a ratio to a baseline of the same test (never against the clock alone).</summary>
internal static class LeastTime
{
    /// <summary>The least time of three runs of <paramref name="action"/>: what a pause or a preemption spared.</summary>
    public static TimeSpan Of(Action action)
    {
        var least = TimeSpan.MaxValue;
        for (var run = 0; run < 3; run++)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            action();
            var took = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            least = took < least ? took : least;
        }

        return least;
    }
}
