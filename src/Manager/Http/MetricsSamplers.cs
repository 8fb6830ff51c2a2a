using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Propeller.Manager.Http;

/// <summary>
/// Runs the samplers GET /metrics reads from PostgreSQL at scrape time (the async projections' lag, Wolverine's dead
/// letters). A sampler that fails (PostgreSQL unreachable) keeps its last values and does not fail the scrape: the
/// API and MQTT series are still served, and <c>manager_metrics_sample_ok{sampler}</c> is 0 until it succeeds again.
/// A failure is logged once as a Warning when the sampler starts failing, not on every scrape.
/// </summary>
internal sealed partial class MetricsSamplers : IDisposable
{
    private readonly Meter _meter = new("Propeller.Manager.Metrics");
    private readonly ConcurrentDictionary<string, int> _ok = new(StringComparer.Ordinal);
    private readonly ILogger<MetricsSamplers> _logger;

    public MetricsSamplers(ILogger<MetricsSamplers> logger)
    {
        _logger = logger;
        _meter.CreateObservableGauge(
            "manager_metrics_sample_ok",
            () => _ok.Select(s => new Measurement<int>(s.Value, new KeyValuePair<string, object?>("sampler", s.Key))),
            description: "1 when the sampler's last read at scrape time succeeded, 0 when it failed (its series keep their last values)");
    }

    public async Task SampleAsync(string sampler, Func<CancellationToken, Task> sample, CancellationToken cancellationToken)
    {
        try
        {
            await sample(cancellationToken);
            if (_ok.TryGetValue(sampler, out var was) && was == 0)
            {
                LogSamplerRecovered(_logger, sampler);
            }

            _ok[sampler] = 1;
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            if (!_ok.TryGetValue(sampler, out var was) || was == 1)
            {
                LogSamplerFailed(_logger, sampler, ex);
            }

            _ok[sampler] = 0;
        }
    }

    public void Dispose() => _meter.Dispose();

    [LoggerMessage(EventId = 4011, Level = LogLevel.Warning, Message = "The {Sampler} metrics could not be read; /metrics serves their last values (manager_metrics_sample_ok is 0) until they can")]
    private static partial void LogSamplerFailed(ILogger logger, string sampler, Exception exception);

    [LoggerMessage(EventId = 4012, Level = LogLevel.Information, Message = "The {Sampler} metrics can be read again")]
    private static partial void LogSamplerRecovered(ILogger logger, string sampler);
}
