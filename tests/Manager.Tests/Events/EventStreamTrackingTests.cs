using System.Net;
using System.Net.ServerSentEvents;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Changes;
using Propeller.Domain.Tasks;
using Propeller.Manager.Events;

namespace Propeller.Manager.Tests.Events;

/// <summary>
/// GET /events past the number of streams a reader remembers the newest sent version of (lowered to 2 here; 10,000 in
/// use): the stream sent least recently is forgotten, not all of them. Before, all were forgotten at once, and a late
/// older notice of a stream sent just before went out, out of order.
/// </summary>
public sealed class EventStreamTrackingTests : IAsyncLifetime
{
    private static readonly TaskId Task1 = new(Guid.CreateVersion7());
    private static readonly TaskId Task2 = new(Guid.CreateVersion7());
    private static readonly TaskId Task3 = new(Guid.CreateVersion7());
    private static readonly TaskId Task4 = new(Guid.CreateVersion7());

    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_tracking", services: s => s
            .AddSingleton<IChangeFeed, LateNoticeFeed>()
            .AddSingleton(new EventEndpoints.Limits(EventEndpoints.Limits.Default.PingInterval, MaxStreamsTracked: 2)));

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenMoreStreamsThanTracked_WhenALateOlderNoticeOfARecentStreamComes_ThenItIsNotSent()
    {
        using var response = await _server.Client.GetAsync("/events?types=task", HttpCompletionOption.ResponseHeadersRead, Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var seen = new List<(string Id, long Version)>();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        await foreach (var item in SseParser.Create(await response.Content.ReadAsStreamAsync(Ct)).EnumerateAsync(timeout.Token))
        {
            if (item.EventType != "task")
            {
                continue;
            }

            var data = JsonDocument.Parse(item.Data).RootElement;
            seen.Add((data.GetProperty("id").GetString()!, data.GetProperty("version").GetInt64()));
            if (data.GetProperty("id").GetString() == Task4.ToString())
            {
                break;
            }
        }

        seen.ShouldBe([(Task1.ToString(), 5), (Task2.ToString(), 3), (Task3.ToString(), 1), (Task4.ToString(), 1)]);
    }

    /// <summary>Tasks 1, 2, 3 (task 1, sent least recently, forgotten), then task 2's late v2 (older than its v3 sent), then task 4.</summary>
    private sealed class LateNoticeFeed : IChangeFeed
    {
        public ChangeSubscription Subscribe()
        {
            var subscription = new ChangeSubscription(16, _ => { });
            foreach (var (id, version) in new[] { (Task1, 5L), (Task2, 3L), (Task3, 1L), (Task2, 2L), (Task4, 1L) })
            {
                subscription.Post(new ChangeNotice($"task-{id.Value}", version, TaskState.Initial with { Exists = true, Deleted = true, Id = id }));
            }

            return subscription;
        }
    }
}
