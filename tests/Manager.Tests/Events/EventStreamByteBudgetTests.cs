using System.Net;
using System.Net.ServerSentEvents;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Changes;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Tests.Events;

/// <summary>
/// GET /events when the reader's buffer is full by bytes, long before its count: the large states are dropped as an
/// overflow is (resync after the backlog), not held until a slow reader gets to them.
/// </summary>
public sealed class EventStreamByteBudgetTests : IAsyncLifetime
{
    private const int Kept = 2;

    private ManagerServer _server = null!;

    public async ValueTask InitializeAsync() =>
        _server = await ManagerServer.StartAsync("api_events_bytes", services: s => s.AddSingleton<IChangeFeed, LargeStatesFeed>());

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenStatesLargerThanTheByteBudgetLeftRoomFor_ThenTheReaderGetsTheOnesKept_ThenResync()
    {
        using var response = await _server.Client.GetAsync("/events?types=task", HttpCompletionOption.ResponseHeadersRead, Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var seen = new List<string>();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            await foreach (var item in SseParser.Create(await response.Content.ReadAsStreamAsync(Ct)).EnumerateAsync(timeout.Token))
            {
                seen.Add(item.EventType);
                if (item.EventType == "resync")
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            // No resync within 10 s: the comparison below says what came instead.
        }

        seen.ShouldBe(["hello", .. Enumerable.Repeat("task", Kept), "resync"]);
    }

    /// <summary>
    /// A feed whose every subscription (a byte budget of <see cref="Kept"/> notices, a count of 4096) is handed more
    /// states with 256 Ki characters of metadata than its bytes hold.
    /// </summary>
    private sealed class LargeStatesFeed : IChangeFeed
    {
        public ChangeSubscription Subscribe()
        {
            var notices = Enumerable.Range(1, Kept + 3).Select(version =>
            {
                var id = new TaskId(Guid.CreateVersion7());
                var spec = TaskSpec.Named("big") with { Metadata = $"{{\"blob\":\"{new string('x', 256 * 1024)}\"}}" };
                return new ChangeNotice($"task-{id.Value}", version, TaskState.Initial with { Exists = true, Deleted = true, Id = id, Spec = spec });
            }).ToList();
            var subscription = new ChangeSubscription(4096, Kept * notices[0].Bytes, _ => { });
            foreach (var notice in notices)
            {
                subscription.Post(notice);
            }

            return subscription;
        }
    }
}
