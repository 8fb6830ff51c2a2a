using System.Net;
using System.Net.ServerSentEvents;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Changes;
using Propeller.Domain.Tasks;
using Propeller.Manager.Events;

namespace Propeller.Manager.Tests.Events;

/// <summary>
/// GET /events?task=X on a busy manager: another task's changes arrive all the time and are filtered out. The ping
/// still comes after a quiet interval of nothing written (a proxy cuts a stream idle for 60 s); before, every filtered
/// change restarted the ping's timer and the stream stayed silent. Also: <c>hello</c>'s and <c>ping</c>'s <c>at</c> in
/// UTC with <c>Z</c>, as every time the API writes.
/// </summary>
public sealed class EventStreamPingTests : IAsyncLifetime
{
    private static readonly TaskId Watched = new(Guid.CreateVersion7());
    private static readonly TaskId Other = new(Guid.CreateVersion7());

    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_ping", services: s => s
            .AddSingleton<IChangeFeed, BusyFeed>()
            .AddSingleton(new EventEndpoints.Limits(TimeSpan.FromSeconds(1), EventEndpoints.Limits.Default.MaxStreamsTracked)));

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAnotherTasksChangesAllTheTime_WhenTheStreamFollowsOneTask_ThenItIsStillPinged()
    {
        using var response = await _server.Client.GetAsync($"/events?task={Watched}", HttpCompletionOption.ResponseHeadersRead, Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var seen = new List<SseItem<string>>();
        // Far beyond the interval (1 s here): a ping that never comes fails the test by this, not a slow one.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            await foreach (var item in SseParser.Create(await response.Content.ReadAsStreamAsync(Ct)).EnumerateAsync(timeout.Token))
            {
                seen.Add(item);
                if (item.EventType == "ping")
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            // no ping: the assertion below says so
        }

        seen.Select(i => i.EventType).ShouldBe(["hello", "ping"], "the other task's changes are filtered out, and the quiet stream is pinged");
        foreach (var item in seen)
        {
            JsonDocument.Parse(item.Data).RootElement.GetProperty("at").GetString().ShouldEndWith("Z");
        }
    }

    /// <summary>Every subscription gets a change of <see cref="Other"/> every few milliseconds until it is disposed,
    /// from a thread of its own: a busy thread pool does not leave a gap as long as the ping interval.</summary>
    private sealed class BusyFeed : IChangeFeed
    {
        public ChangeSubscription Subscribe()
        {
            var stopped = 0;
            var subscription = new ChangeSubscription(1024, _ => Volatile.Write(ref stopped, 1));
            var poster = new Thread(() =>
            {
                for (var version = 1L; Volatile.Read(ref stopped) == 0; version++)
                {
                    subscription.Post(new ChangeNotice($"task-{Other.Value}", version, TaskState.Initial with { Exists = true, Deleted = true, Id = Other }));
                    Thread.Sleep(2);
                }
            })
            {
                IsBackground = true,
            };
            poster.Start();
            return subscription;
        }
    }
}
