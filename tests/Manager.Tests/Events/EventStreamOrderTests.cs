using System.Net;
using System.Net.ServerSentEvents;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Changes;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Tests.Events;

/// <summary>
/// GET /events when two commits on one task are announced out of order (each is announced after its own commit, so a
/// later commit's notice can come first): the older one is not sent. The dashboard's task page showed it, putting a
/// completed task back to running with nothing to correct it.
/// </summary>
public sealed class EventStreamOrderTests : IAsyncLifetime
{
    private static readonly TaskId Task1 = new(Guid.CreateVersion7());
    private static readonly TaskId Task2 = new(Guid.CreateVersion7());

    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_order", services: s => s.AddSingleton<IChangeFeed, OutOfOrderFeed>());

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenANoticeOlderThanOneSent_WhenStreamed_ThenItIsNotSent_AndNewerOnesAre()
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
            if (seen.Count == 4)
            {
                break;
            }
        }

        seen.ShouldBe([(Task1.ToString(), 6), (Task2.ToString(), 2), (Task1.ToString(), 7), (Task2.ToString(), 3)]);
    }

    /// <summary>Task 1's v6 before its v5; task 2's v2 (its own stream is not held back by task 1's); then newer ones.</summary>
    private sealed class OutOfOrderFeed : IChangeFeed
    {
        public ChangeSubscription Subscribe()
        {
            var subscription = new ChangeSubscription(16, _ => { });
            foreach (var (id, version) in new[] { (Task1, 6L), (Task1, 5L), (Task2, 2L), (Task1, 6L), (Task1, 7L), (Task2, 3L) })
            {
                subscription.Post(new ChangeNotice($"task-{id.Value}", version, TaskState.Initial with { Exists = true, Deleted = true, Id = id }));
            }

            return subscription;
        }
    }
}
