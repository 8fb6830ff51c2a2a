using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Propeller.Manager.Http;

/// <summary>
/// Collects every instrument of the meters named "Propeller*" (System.Diagnostics.Metrics) and writes them in the
/// Prometheus text format for GET /metrics: counters as <c>_total</c>-less counters (names as the original's),
/// histograms as summaries with count and sum, observable gauges read at scrape time.
/// </summary>
internal sealed class PrometheusMetrics : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Name, string Labels), Series> _series = new();
    private readonly ConcurrentDictionary<string, (string Kind, string? Help)> _instruments = new(StringComparer.Ordinal);

    /// <summary>The label text of each combination of up to two tags seen (a measurement on the hot path, every task's
    /// requests and events, formats none).</summary>
    private readonly ConcurrentDictionary<(string?, object?, string?, object?), string> _labels = new();

    public PrometheusMetrics()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name.StartsWith("Propeller", StringComparison.Ordinal))
            {
                var name = Name(instrument);
                _instruments[name] = (KindOf(instrument), instrument.Description);
                listener.EnableMeasurementEvents(instrument, new Measured(name, instrument.GetType().Name.StartsWith("Observable", StringComparison.Ordinal)));
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, v, tags, state) => Record((Measured)state!, v, tags));
        _listener.SetMeasurementEventCallback<int>((_, v, tags, state) => Record((Measured)state!, v, tags));
        _listener.SetMeasurementEventCallback<double>((_, v, tags, state) => Record((Measured)state!, v, tags));
        _listener.Start();
    }

    public string Scrape()
    {
        _listener.RecordObservableInstruments();
        var text = new StringBuilder();
        foreach (var group in _series.GroupBy(s => s.Key.Name).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var (kind, help) = _instruments.GetValueOrDefault(group.Key, ("untyped", null));
            if (!string.IsNullOrEmpty(help))
            {
                text.Append("# HELP ").Append(group.Key).Append(' ').Append(help).Append('\n');
            }

            text.Append("# TYPE ").Append(group.Key).Append(' ').Append(kind).Append('\n');
            foreach (var (key, series) in group.OrderBy(s => s.Key.Labels, StringComparer.Ordinal))
            {
                if (kind == "summary")
                {
                    Line(text, key.Name + "_count", key.Labels, series.Count);
                    Line(text, key.Name + "_sum", key.Labels, series.Value);
                }
                else
                {
                    Line(text, key.Name, key.Labels, series.Value);
                }
            }
        }

        return text.ToString();
    }

    public void Dispose() => _listener.Dispose();

    private void Record(Measured instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var labels = tags.Length switch
        {
            0 => "",
            1 => _labels.GetOrAdd((tags[0].Key, tags[0].Value, null, null), static (_, pair) => Labels([pair]), tags[0]),
            2 => _labels.GetOrAdd((tags[0].Key, tags[0].Value, tags[1].Key, tags[1].Value), static (_, pairs) => Labels([pairs.Item1, pairs.Item2]), (tags[0], tags[1])),
            _ => Labels(tags),
        };
        var series = _series.GetOrAdd((instrument.Name, labels), static _ => new Series());
        lock (series)
        {
            if (instrument.Observable)
            {
                series.Value = value;
            }
            else
            {
                series.Value += value;
                series.Count++;
            }
        }
    }

    private static string KindOf(Instrument instrument) => instrument switch
    {
        _ when instrument.GetType().Name.StartsWith("Histogram", StringComparison.Ordinal) => "summary",
        _ when instrument.GetType().Name.StartsWith("ObservableGauge", StringComparison.Ordinal) => "gauge",
        _ when instrument.GetType().Name.Contains("UpDown", StringComparison.Ordinal) => "gauge",
        _ => "counter",
    };

    private static string Name(Instrument instrument) => Sanitize(instrument.Name);

    private static string Sanitize(string name)
    {
        var chars = name.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            if (!(char.IsAsciiLetterOrDigit(chars[i]) || chars[i] == '_'))
            {
                chars[i] = '_';
            }
        }

        return new string(chars);
    }

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0)
        {
            return "";
        }

        var pairs = new List<string>(tags.Length);
        foreach (var tag in tags)
        {
            var value = Convert.ToString(tag.Value, CultureInfo.InvariantCulture)?.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
            pairs.Add($"{Sanitize(tag.Key)}=\"{value}\"");
        }

        pairs.Sort(StringComparer.Ordinal);
        return "{" + string.Join(',', pairs) + "}";
    }

    private static void Line(StringBuilder text, string name, string labels, double value) =>
        text.Append(name).Append(labels).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');

    /// <summary>An instrument's series name and kind, worked out once, when it is published.</summary>
    private sealed record Measured(string Name, bool Observable);

    private sealed class Series
    {
        public double Value { get; set; }

        public long Count { get; set; }
    }
}
