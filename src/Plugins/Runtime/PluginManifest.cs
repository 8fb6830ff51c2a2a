using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Plugins.Hosting;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// The optional <c>NAME.json</c> beside <c>NAME.wasm</c> (docs/plugins.md): version, active flag, limits and capabilities.
/// Missing values take the host's defaults; unknown keys are ignored, unknown capabilities are an error.
/// </summary>
public sealed record PluginManifest
{
    public const string QueueCapability = "queue";

    /// <summary>Lets the manifest raise the job limits above the host defaults (seed 004: granted explicitly).</summary>
    public const string HighResourceJobsCapability = "high_resource_jobs";

    /// <summary>The largest <c>memory_mb</c> / <c>job_memory_mb</c> (a 32-bit memory is 4 GiB; Wasmtime's cap is in bytes).</summary>
    public const int MaxMemoryMb = 2047;

    /// <summary>The longest <c>timeout_ms</c> / <c>job_timeout_ms</c>: one day.</summary>
    public const long MaxTimeoutMs = 86_400_000;

    public static PluginManifest Empty { get; } = new();

    public string? Version { get; init; }

    public bool Active { get; init; } = true;

    public PluginLimits Limits { get; init; } = PluginLimits.Default;

    public IReadOnlyList<string> Capabilities { get; init; } = [];

    /// <summary>Enqueues per minute (null: the host default).</summary>
    public int? RatePerMinute { get; init; }

    /// <summary>Jobs running at once (null: the host default).</summary>
    public int? Concurrency { get; init; }

    /// <summary>A lower retry cap than the host's (null: the host cap).</summary>
    public int? MaxRetry { get; init; }

    public bool Has(string capability) => Capabilities.Contains(capability, StringComparer.Ordinal);

    /// <summary>Reads <paramref name="path"/> when it exists; throws <see cref="FormatException"/> on a bad manifest.</summary>
    public static PluginManifest Load(string path, PluginLimits defaults)
    {
        if (!File.Exists(path))
        {
            return Empty with { Limits = defaults };
        }

        ManifestFile? file;
        try
        {
            file = JsonSerializer.Deserialize(File.ReadAllBytes(path), ManifestJson.Default.ManifestFile);
        }
        catch (JsonException e)
        {
            throw new FormatException($"manifest {Path.GetFileName(path)}: {e.Message}", e);
        }

        return From(file ?? new ManifestFile(), defaults, Path.GetFileName(path));
    }

    private static PluginManifest From(ManifestFile file, PluginLimits defaults, string name)
    {
        foreach (var capability in file.Capabilities ?? [])
        {
            if (capability is not (QueueCapability or HighResourceJobsCapability))
            {
                throw new FormatException($"manifest {name}: unknown capability \"{capability}\"");
            }
        }

        var l = file.Limits ?? new LimitsFile();
        var limits = new PluginLimits
        {
            Fuel = Ranged(l.Fuel, defaults.Fuel, "limits.fuel", 1, long.MaxValue),
            MemoryMb = (int)Ranged(l.MemoryMb, defaults.MemoryMb, "limits.memory_mb", 1, MaxMemoryMb),
            Timeout = l.TimeoutMs is { } ms ? TimeSpan.FromMilliseconds(Ranged(ms, 0, "limits.timeout_ms", 1, MaxTimeoutMs)) : defaults.Timeout,
            JobFuel = Ranged(l.JobFuel, defaults.JobFuel, "limits.job_fuel", 1, long.MaxValue),
            JobMemoryMb = (int)Ranged(l.JobMemoryMb, defaults.JobMemoryMb, "limits.job_memory_mb", 1, MaxMemoryMb),
            JobTimeout = l.JobTimeoutMs is { } jms ? TimeSpan.FromMilliseconds(Ranged(jms, 0, "limits.job_timeout_ms", 1, MaxTimeoutMs)) : defaults.JobTimeout,
        };
        if (!(file.Capabilities ?? []).Contains(HighResourceJobsCapability, StringComparer.Ordinal))
        {
            // Without high_resource_jobs the job limits can only be lowered.
            limits = limits with
            {
                JobFuel = Math.Min(limits.JobFuel, defaults.JobFuel),
                JobMemoryMb = Math.Min(limits.JobMemoryMb, defaults.JobMemoryMb),
                JobTimeout = limits.JobTimeout < defaults.JobTimeout ? limits.JobTimeout : defaults.JobTimeout,
            };
        }

        if (limits.Timeout > TimeSpan.FromDays(1) || limits.JobTimeout > TimeSpan.FromDays(1))
        {
            throw new FormatException($"manifest {name}: timeouts are at most one day");
        }

        if (limits.MemoryMb > MaxMemoryMb || limits.JobMemoryMb > MaxMemoryMb)
        {
            throw new FormatException($"manifest {name}: memory limits are at most {MaxMemoryMb} MiB");
        }

        return new PluginManifest
        {
            Version = file.Version,
            Active = file.Active ?? true,
            Limits = limits,
            Capabilities = [.. (file.Capabilities ?? []).Distinct(StringComparer.Ordinal)],
            RatePerMinute = file.Queue?.RatePerMinute is { } rate ? (int)Ranged(rate, 0, "queue.rate_per_minute", 1, int.MaxValue) : null,
            Concurrency = file.Queue?.Concurrency is { } c ? (int)Ranged(c, 0, "queue.concurrency", 1, int.MaxValue) : null,
            MaxRetry = file.Queue?.MaxRetry is { } r ? (int)Ranged(r, 0, "queue.max_retry", 0, int.MaxValue) : null,
        };

        // Checked before any conversion: a value out of range names its key instead of wrapping around or throwing later.
        long Ranged(long? value, long fallback, string key, long min, long max) => value switch
        {
            null => fallback,
            { } v when v >= min && v <= max => v,
            _ => throw new FormatException($"manifest {name}: {key} must be between {min} and {max}, got {value}"),
        };
    }

    internal sealed record ManifestFile
    {
        public string? Version { get; init; }

        public bool? Active { get; init; }

        public LimitsFile? Limits { get; init; }

        public List<string>? Capabilities { get; init; }

        public QueueFile? Queue { get; init; }
    }

    internal sealed record LimitsFile
    {
        public long? Fuel { get; init; }

        public long? MemoryMb { get; init; }

        public long? TimeoutMs { get; init; }

        public long? JobFuel { get; init; }

        public long? JobMemoryMb { get; init; }

        public long? JobTimeoutMs { get; init; }
    }

    internal sealed record QueueFile
    {
        public long? RatePerMinute { get; init; }

        public long? Concurrency { get; init; }

        public long? MaxRetry { get; init; }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true)]
[JsonSerializable(typeof(PluginManifest.ManifestFile))]
internal sealed partial class ManifestJson : JsonSerializerContext;
