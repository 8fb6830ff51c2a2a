using System.Diagnostics;

namespace Propeller.Bench.Support;

/// <summary>Ends what a benchmark started, whatever ended the run (an error, a timeout, Ctrl+C).</summary>
internal static class ChildProcess
{
    /// <summary>
    /// Kills <paramref name="process"/> and its children if it still runs, waits for its end (5 s at most, so that nothing
    /// after it runs beside a dying process), then disposes of it; null does nothing.
    /// </summary>
    public static void Stop(Process? process)
    {
        if (process is null)
        {
            return;
        }

        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(TimeSpan.FromSeconds(5));
            }
        }
        catch (InvalidOperationException)
        {
            // It ended between the check and the kill, or never started.
        }
        finally
        {
            process.Dispose();
        }
    }
}
