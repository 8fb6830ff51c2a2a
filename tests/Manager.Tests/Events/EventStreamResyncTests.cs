using System.Net;
using System.Net.ServerSentEvents;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Changes;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Tests.Events;

/// <summary>GET /events when the reader's buffer overflowed: resync comes after the backlog, even when nothing else changes.</summary>
public sealed class EventStreamResyncTests : IAsyncLifetime
{
    private const int Capacity = 3;

    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_resync", services: s => s.AddSingleton<IChangeFeed, OverflowingFeed>());

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenMoreChangesThanTheBufferHolds_WhenNothingElseChanges_ThenResyncArrivesAfterEveryBufferedTask()
    {
        // Counted in /metrics (manager_event_resyncs_total); other tests' resyncs may add to it, never take from it.
        long resyncs = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == ManagerMeter.Name && instrument.Name == "manager_event_resyncs_total")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref resyncs, value));
        listener.Start();
        using var response = await _server.Client.GetAsync("/events?types=task", HttpCompletionOption.ResponseHeadersRead, Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var seen = new List<string>();
        // Well before the first ping (15 s): the resync must not wait for another change or a ping.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        await foreach (var item in SseParser.Create(await response.Content.ReadAsStreamAsync(Ct)).EnumerateAsync(timeout.Token))
        {
            seen.Add(item.EventType);
            if (item.EventType == "resync")
            {
                break;
            }

            if (item.EventType == "task")
            {
                JsonDocument.Parse(item.Data).RootElement.GetProperty("deleted").GetBoolean().ShouldBeTrue();
            }
        }

        seen.ShouldBe(["hello", .. Enumerable.Repeat("task", Capacity), "resync"]);
        Interlocked.Read(ref resyncs).ShouldBeGreaterThanOrEqualTo(1);
    }

    /// <summary>A feed whose every subscription starts with more changes than its buffer holds (the rest dropped).</summary>
    private sealed class OverflowingFeed : IChangeFeed
    {
        public ChangeSubscription Subscribe()
        {
            var subscription = new ChangeSubscription(Capacity, _ => { });
            for (var i = 1; i <= Capacity + 2; i++)
            {
                var id = new TaskId(Guid.CreateVersion7());
                subscription.Post(new ChangeNotice($"task-{id.Value}", i, TaskState.Initial with { Exists = true, Deleted = true, Id = id }));
            }

            return subscription;
        }
    }
}
