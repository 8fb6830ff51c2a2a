using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>Metrics samples the manager must not store: numbers jsonb writes out in hundreds of thousands of digits,
/// and proplet ids too long for proplet_metrics' index.</summary>
public partial class DispatchTests
{
    /// <summary>
    /// <c>1e131000</c> is within numeric's range, and jsonb writes it out in full: 8 bytes in, 131,001 characters on every
    /// read of the metrics page (a 20 KB sample read back as ~300 MB). Such samples are malformed: logged, counted, not
    /// stored; a good sample beside them is.
    /// </summary>
    [Fact]
    public async Task GivenMetricsWithNumbersWrittenOutInHundredsOfThousandsOfDigits_WhenHandled_ThenTheyAreMalformedAndNotStored()
    {
        var (taskId, propletId) = (Guid.NewGuid().ToString(), Guid.NewGuid().ToString());
        var huge = string.Join(',', Enumerable.Repeat("1e131000", 4));
        var (malformed, _) = await AcceptCountingAsync(
            Message("control/proplet/create", $$$"""{"proplet_id":"{{{propletId}}}"}"""),
            Message("control/proplet/task_metrics", $$$"""{"task_id":"{{{taskId}}}","proplet_id":"{{{propletId}}}","metrics":{"a":[{{{huge}}}]}}"""),
            Message("control/proplet/task_metrics", $$$"""{"task_id":"{{{taskId}}}","proplet_id":"{{{propletId}}}","metrics":{"cpu_percent":1.5},"aggregated":{"tiny":1e-1000}}"""),
            Message("control/proplet/metrics", $$$"""{"proplet_id":"{{{propletId}}}","cpu_metrics":{"a":[{{{huge}}}]}}"""),
            // 12,000 numbers of 101 digits: 72 KB in, 1.2 MB as stored.
            Message("control/proplet/metrics", $$$"""{"proplet_id":"{{{propletId}}}","memory_metrics":{"a":[{{{string.Join(',', Enumerable.Repeat("1e100", 12_000))}}}]}}"""),
            Message("control/proplet/task_metrics", $$$"""{"task_id":"{{{taskId}}}","proplet_id":"{{{propletId}}}","metrics":{"cpu_percent":2.5,"max":1.7976931348623157e308,"min":5e-324}}"""));

        malformed.ShouldBe(4, _server.Warnings.ToString());
        var stored = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{taskId}/metrics", Ct);
        stored.GetProperty("total").GetInt32().ShouldBe(1);
        stored.GetProperty("metrics")[0].GetProperty("metrics").GetProperty("cpu_percent").GetDouble().ShouldBe(2.5);
        (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}/metrics", Ct)).GetProperty("total").GetInt32().ShouldBe(0);
        var warnings = _server.Warnings.ToString();
        warnings.ShouldContain("metrics holds a number of more than 400 digits written out");
        warnings.ShouldContain("aggregated holds a number of more than 400 digits written out");
        warnings.ShouldContain("cpu_metrics holds a number of more than 400 digits written out");
        warnings.ShouldContain("memory_metrics is larger than 64 KiB");
        warnings.ShouldNotContain("Handling a message on");
    }

    /// <summary>
    /// A proplet id of 3,000 characters (random, so PostgreSQL cannot compress it): its discovery and each heartbeat failed
    /// (PostgreSQL 54000: an index row too large for the liveness timer's key), so did each metrics sample
    /// (proplet_metrics' index), each logged with a stack trace and not counted as malformed. Now all are malformed, as
    /// the HTTP API refuses a proplet_id over 1,024 bytes of UTF-8.
    /// </summary>
    [Fact]
    public async Task GivenAProplet_IdOf3000Characters_WhenItsMessagesAreHandled_ThenTheyAreMalformed()
    {
        // 1,000 random CJK characters: 3,000 bytes of UTF-8, as PostgreSQL counts (random, so it does not compress
        // under the index's limit); a limit in characters let it through.
        var random = new Random(46);
        var longId = new string([.. Enumerable.Range(0, 1000).Select(_ => (char)random.Next(0x4E00, 0x9FFF))]);
        var taskId = Guid.NewGuid().ToString();
        var (malformed, warnings) = await AcceptCountingAsync(
            Message("control/proplet/create", $$$"""{"proplet_id":"{{{longId}}}"}"""),
            Message("control/proplet/alive", $$$"""{"proplet_id":"{{{longId}}}","status":"alive"}"""),
            Message("control/proplet/metrics", $$$"""{"proplet_id":"{{{longId}}}","cpu_metrics":{"percent":1.0}}"""),
            Message("control/proplet/task_metrics", $$$"""{"task_id":"{{{taskId}}}","proplet_id":"{{{longId}}}","metrics":{"cpu_percent":1.0}}"""));

        malformed.ShouldBe(4, warnings);
        warnings.ShouldContain("proplet_id is longer than 1024 bytes (UTF-8)");
        warnings.ShouldNotContain("54000");
        warnings.ShouldNotContain("Handling a message on");
        (await Http.GetFromJsonAsync<JsonElement>("/proplets?limit=1000", Ct)).GetProperty("proplets").EnumerateArray()
            .ShouldNotContain(p => p.GetProperty("id").GetString() == longId);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{taskId}/metrics", Ct)).GetProperty("total").GetInt32().ShouldBe(0);
    }

    private ReceivedMessage Message(string path, string json) =>
        new($"{Base}/{path}", Encoding.UTF8.GetBytes(json), MqttQualityOfServiceLevel.AtLeastOnce, Retain: false, Duplicate: false);

    /// <summary>Accepts the messages as the broker connection does (returning once their effects are committed), and
    /// counts mqtt_malformed_messages for them alone: the meter is the process's, other tests count there too.</summary>
    private async Task<(long Malformed, string Warnings)> AcceptCountingAsync(params ReceivedMessage[] messages)
    {
        var ours = new AsyncLocal<bool>();
        long malformed = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Propeller.Inbound" && instrument.Name == "mqtt_malformed_messages")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) =>
        {
            if (ours.Value)
            {
                Interlocked.Add(ref malformed, value);
            }
        });
        listener.Start();
        ours.Value = true;
        await _server.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().AcceptBatchAsync(messages, Ct);
        ours.Value = false;
        return (Interlocked.Read(ref malformed), _server.Warnings.ToString());
    }
}
