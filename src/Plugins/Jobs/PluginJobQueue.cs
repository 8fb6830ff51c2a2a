using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Jobs;

/// <summary>
/// The <c>queue.enqueue</c> side of the job bridge (seed 004): validates the request, applies the plugin's rate limit
/// (to jobs it would store: a repeated <c>idempotency_key</c> returns the first job's id without spending a token), rewrites the type to <c>plugin:{name}:{type}</c> on the <c>plugins</c> queue and stores the job durably.
/// Options are whitelisted: <c>delay</c> and <c>unique_for</c> (seconds), <c>max_retry</c> (capped) and
/// <c>idempotency_key</c>; any other key (a queue, say) is EINVAL.
/// </summary>
public sealed class PluginJobQueue : IPluginJobSink
{
    private readonly PluginJobStore _store;
    private readonly PluginJobOptions _options;
    private readonly PluginRateLimiter _limiter;

    public PluginJobQueue(PluginJobStore store, PluginJobOptions options, TimeProvider time)
    {
        _store = store;
        _options = options;
        _limiter = new PluginRateLimiter(time);
    }

    /// <summary>Raised after a job was stored, so a worker in this process can look at once.</summary>
    public event EventHandler? Enqueued;

    /// <summary>
    /// Validates and stores a job. The insert has one deadline, what is left of the hook's time (<paramref name="timeLeft"/>,
    /// infinite for none) capped at <see cref="PluginJobOptions.EnqueueTimeout"/>; past it, or when the hook's caller is
    /// cancelled, the plugin gets EIO. Before, each of up to five statements had the whole enqueue timeout (and the
    /// <c>unique_for</c> lock could wait all of it), so an authorize hook limited to 1 s held its request for ~30 s.
    /// </summary>
    public int Enqueue(LoadedPlugin plugin, string? hook, string taskType, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> options, TimeSpan timeLeft, CancellationToken cancellationToken, out Guid jobId)
    {
        ArgumentNullException.ThrowIfNull(plugin);
        jobId = default;
        if (!plugin.Manifest.Has(PluginManifest.QueueCapability))
        {
            return PluginErrno.Permission;
        }

        if (taskType.Length is 0 or > 128 || taskType.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or ':')))
        {
            return PluginErrno.Invalid;
        }

        string? payloadText = null;
        if (payload.Length > 0)
        {
            if (payload.Length > 1 << 20 || !IsJson(payload))
            {
                return PluginErrno.Invalid;
            }

            payloadText = Encoding.UTF8.GetString(payload);
        }

        var cap = Math.Min(_options.MaxRetryCap, plugin.Manifest.MaxRetry ?? int.MaxValue);
        if (!TryReadOptions(options, out var delay, out var uniqueFor, out var maxRetry, out var idempotencyKey))
        {
            return PluginErrno.Invalid;
        }

        var type = $"plugin:{plugin.Name}:{taskType}";
        var uniqueKey = uniqueFor is null
            ? null
            : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(type + "\n" + payloadText)));
        var job = new NewPluginJob(
            Guid.CreateVersion7(),
            plugin.Name,
            plugin.Hash,
            type,
            taskType,
            payloadText,
            hook,
            idempotencyKey,
            uniqueKey,
            uniqueFor,
            Math.Clamp(maxRetry ?? _options.DefaultMaxRetry, 0, cap),
            delay ?? 0);
        // Infinite: a call without a time limit. Any other negative time left is a hook past its time: EIO at once.
        var budget = timeLeft == Timeout.InfiniteTimeSpan || timeLeft > _options.EnqueueTimeout ? _options.EnqueueTimeout : timeLeft;
        if (budget <= TimeSpan.Zero)
        {
            return PluginErrno.IO;
        }

        // The rate limit is asked by the insert, after it looked the idempotency key up and just before it stores: a
        // retried hook repeating an enqueue gets the first job's id even with its tokens spent, and a repeat, a duplicate
        // or an EIO costs no token (before, the limiter ran first: a repeated key could be ERATELIMIT, and every EIO
        // spent a token for nothing stored).
        var rate = plugin.Manifest.RatePerMinute ?? _options.DefaultRatePerMinute;
        var acquired = false;
        PluginJobInsertResult stored;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(budget);
        try
        {
            // The host call is synchronous (Wasmtime calls it on the guest thread, which has no synchronization context to
            // deadlock on), and only the asynchronous API takes one token for connecting and for every statement. It
            // blocks that thread-pool thread for the insert (docs/adr/0004-plugin-host.md).
#pragma warning disable VSTHRD002
            stored = _store.InsertAsync(job, () => acquired = _limiter.TryAcquire(plugin.Name, rate), deadline.Token).GetAwaiter().GetResult();
#pragma warning restore VSTHRD002
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or TimeoutException or OperationCanceledException)
        {
            if (acquired)
            {
                _limiter.Refund(plugin.Name, rate);
            }

            return PluginErrno.IO;
        }

        switch (stored.Outcome)
        {
            case PluginJobInsertOutcome.Refused:
                return PluginErrno.RateLimit;
            case PluginJobInsertOutcome.Duplicate:
                return PluginErrno.Exists;
            case PluginJobInsertOutcome.Repeated:
                // A concurrent enqueue of the key stored it between the look-up and the insert: nothing stored by this one.
                if (acquired)
                {
                    _limiter.Refund(plugin.Name, rate);
                }

                jobId = stored.Id;
                return PluginErrno.Success;
            default:
                jobId = stored.Id;
                Enqueued?.Invoke(this, EventArgs.Empty);
                return PluginErrno.Success;
        }
    }

    /// <summary>
    /// One JSON value and nothing after it, every string and key of which decodes (the reader alone lets invalid UTF-8
    /// and unpaired surrogate escapes through, and the worker could not rebuild the request from them).
    /// </summary>
    private static bool IsJson(ReadOnlySpan<byte> bytes)
    {
        // Read to the end: the reader refuses anything after the one value.
        var reader = new Utf8JsonReader(bytes);
        try
        {
            var any = false;
            while (reader.Read())
            {
                any = true;
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName)
                {
                    reader.GetString();
                }
            }

            return any;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return false;
        }
    }

    private static bool TryReadOptions(ReadOnlySpan<byte> bytes, out double? delay, out double? uniqueFor, out int? maxRetry, out string? idempotencyKey)
    {
        delay = null;
        uniqueFor = null;
        maxRetry = null;
        idempotencyKey = null;
        if (bytes.Length == 0)
        {
            return true;
        }

        try
        {
            using var document = JsonDocument.Parse(bytes.ToArray());
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return false;
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                var value = property.Value;
                switch (property.Name)
                {
                    case "delay" when value.ValueKind == JsonValueKind.Number && value.GetDouble() is >= 0 and <= 31_536_000:
                        delay = value.GetDouble();
                        break;
                    case "unique_for" when value.ValueKind == JsonValueKind.Number && value.GetDouble() is > 0 and <= 31_536_000:
                        uniqueFor = value.GetDouble();
                        break;
                    case "max_retry" when value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var retries) && retries >= 0:
                        maxRetry = retries;
                        break;
                    // No U+0000: the text column cannot hold it, and PostgreSQL's refusal came back as EIO, not EINVAL.
                    case "idempotency_key" when value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 and <= 256 } key && !StorableText.HoldsNul(key):
                        idempotencyKey = key;
                        break;
                    default:
                        return false;
                }
            }

            return true;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a key or string that does not decode (invalid UTF-8, an unpaired surrogate).
            return false;
        }
    }
}
