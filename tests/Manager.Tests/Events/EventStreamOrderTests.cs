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

    // Task 1's v6 before its v5; task 2's v2 (its own stream is not held back by task 1's); then newer ones.
    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_order", services: s => s.AddSingleton<IChangeFeed>(
            new ScriptedFeed((Task1, 6), (Task1, 5), (Task2, 2), (Task1, 6), (Task1, 7), (Task2, 3))));

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenANoticeOlderThanOneSent_WhenStreamed_ThenItIsNotSent_AndNewerOnesAre()
    {
        var seen = await ScriptedFeed.ReadTasksAsync(_server.Client, s => s.Count == 4, Ct);

        seen.ShouldBe([(Task1.ToString(), 6), (Task2.ToString(), 2), (Task1.ToString(), 7), (Task2.ToString(), 3)]);
    }
}
