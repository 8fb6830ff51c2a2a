using System.Collections.Concurrent;

namespace Propeller.Plugins.Jobs;

/// <summary>A token bucket per plugin: <c>perMinute</c> tokens, refilled continuously; time from a <see cref="TimeProvider"/>.</summary>
internal sealed class PluginRateLimiter(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);

    public bool TryAcquire(string plugin, int perMinute)
    {
        var now = time.GetTimestamp();
        var bucket = _buckets.GetOrAdd(plugin, _ => new Bucket(perMinute, now));
        lock (bucket)
        {
            var elapsed = time.GetElapsedTime(bucket.Stamp, now);
            bucket.Stamp = now;
            bucket.Tokens = Math.Min(perMinute, bucket.Tokens + (elapsed.TotalMinutes * perMinute));
            if (bucket.Tokens < 1)
            {
                return false;
            }

            bucket.Tokens -= 1;
            return true;
        }
    }

    /// <summary>Gives back a token <see cref="TryAcquire"/> took for a job that was not stored (an I/O error, a repeat).</summary>
    public void Refund(string plugin, int perMinute)
    {
        if (_buckets.TryGetValue(plugin, out var bucket))
        {
            lock (bucket)
            {
                bucket.Tokens = Math.Min(perMinute, bucket.Tokens + 1);
            }
        }
    }

    private sealed class Bucket(double tokens, long stamp)
    {
        public double Tokens { get; set; } = tokens;

        public long Stamp { get; set; } = stamp;
    }
}
