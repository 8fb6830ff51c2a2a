using System.Diagnostics.Metrics;
using System.Globalization;

namespace Propeller.Bench.Support;

/// <summary>
/// The manager's group commit seen from its metrics (<c>manager_command_batch_size</c>,
/// <c>manager_command_batch_duration_seconds</c>, published by the manager in this process): how many batches ran while
/// listening, how many commands each took on average and how long each took, which says how long a command waits for
/// its transaction.
/// </summary>
internal sealed class CommandBatches : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _gate = new();
    private long _batches;
    private long _commands;
    private double _seconds;
    private long _queued;
    private double _queueSeconds;

    private CommandBatches()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == Propeller.Manager.ManagerMeter.Name && instrument.Name.StartsWith("manager_command_", StringComparison.Ordinal))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<int>((_, size, _, _) =>
        {
            lock (_gate)
            {
                _batches++;
                _commands += size;
            }
        });
        _listener.SetMeasurementEventCallback<double>((instrument, seconds, _, _) =>
        {
            lock (_gate)
            {
                if (instrument.Name == "manager_command_queue_seconds")
                {
                    _queued++;
                    _queueSeconds += seconds;
                }
                else
                {
                    _seconds += seconds;
                }
            }
        });
    }

    /// <summary>Starts listening now (what ran before is not counted).</summary>
    public static CommandBatches Listen()
    {
        var batches = new CommandBatches();
        batches._listener.Start();
        return batches;
    }

    /// <summary>The figures as benchmark fields.</summary>
    public override string ToString()
    {
        lock (_gate)
        {
            var batches = Math.Max(1, _batches);
            return string.Create(
                CultureInfo.InvariantCulture,
                $"batches={_batches} batch_commands_mean={(double)_commands / batches:F1} batch_ms_mean={_seconds * 1000 / batches:F2} queue_ms_mean={_queueSeconds * 1000 / Math.Max(1, _queued):F2}");
        }
    }

    public void Dispose() => _listener.Dispose();
}
