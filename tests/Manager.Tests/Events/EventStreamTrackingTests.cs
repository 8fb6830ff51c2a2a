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

    // Tasks 1, 2, 3 (task 1, sent least recently, forgotten), then task 2's late v2 (older than its v3 sent), then task 4.
    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_tracking", services: s => s
            .AddSingleton<IChangeFeed>(new ScriptedFeed((Task1, 5), (Task2, 3), (Task3, 1), (Task2, 2), (Task4, 1)))
            .AddSingleton(new EventEndpoints.Limits(EventEndpoints.Limits.Default.PingInterval, MaxStreamsTracked: 2)));

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenMoreStreamsThanTracked_WhenALateOlderNoticeOfARecentStreamComes_ThenItIsNotSent()
    {
        var seen = await ScriptedFeed.ReadTasksAsync(_server.Client, s => s[^1].Id == Task4.ToString(), Ct);

        seen.ShouldBe([(Task1.ToString(), 5), (Task2.ToString(), 3), (Task3.ToString(), 1), (Task4.ToString(), 1)]);
    }
}
